#include "conntrack/event_socket.hpp"

#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "conntrack/sample_parser.hpp"

namespace ctquota::conntrack {
namespace {

constexpr unsigned kBatch = EventSocket::kMaxPerRead;  // datagrams per recvmmsg
static_assert(EventLanding::kSlots == kBatch);
constexpr std::size_t kDatagram = 8192;  // one event is about 1.3 KB

struct Context {
    std::vector<core::FlowSample>* out;
    EventStats* stats;
};

int on_message(const nlmsghdr* nlh, void* data) {
    auto* ctx = static_cast<Context*>(data);
    ++ctx->stats->messages;
    const auto type = static_cast<std::uint8_t>(nlh->nlmsg_type & 0xff);
    if ((nlh->nlmsg_type >> 8) != NFNL_SUBSYS_CTNETLINK || type != IPCTNL_MSG_CT_DELETE) {
        ++ctx->stats->unparsed;
        return MNL_CB_OK;
    }
    if (auto s = sample_from_message(nlh, core::SampleKind::Destroy)) {
        ctx->out->push_back(*s);
    } else {
        ++ctx->stats->unparsed;
    }
    return MNL_CB_OK;
}

}  // namespace

EventSocket::EventSocket(std::uint64_t buffer_bytes, int adopt_fd)
    : adopted_(adopt_fd >= 0), storage_(kBatch * kDatagram) {
    if (adopted_) {
        adopt(adopt_fd);
    } else {
        nl_ = mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (nl_ == nullptr) {
            throw std::runtime_error(std::string("cannot open the ctnetlink event socket: ") +
                                     std::strerror(errno));
        }
        if (mnl_socket_bind(nl_, NF_NETLINK_CONNTRACK_DESTROY, MNL_SOCKET_AUTOPID) < 0) {
            const int err = errno;
            mnl_socket_close(nl_);
            throw std::runtime_error(std::string("cannot subscribe to conntrack DESTROY events: ") +
                                     std::strerror(err) + " (needs CAP_NET_ADMIN)");
        }
    }
    set_buffer(std::max(buffer_bytes, granted_));
}

void EventSocket::adopt(int fd) {
    int domain = 0;
    int protocol = 0;
    socklen_t len = sizeof domain;
    sockaddr_nl addr{};
    socklen_t alen = sizeof addr;
    const bool ours = getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
                      domain == AF_NETLINK &&
                      getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
                      protocol == NETLINK_NETFILTER &&
                      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) == 0 &&
                      (addr.nl_groups & NF_NETLINK_CONNTRACK_DESTROY) != 0;
    if (!ours || (nl_ = mnl_socket_fdopen(fd)) == nullptr) {
        ::close(fd);
        throw std::runtime_error("the event socket handed back is not a ctnetlink DESTROY socket");
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int got = 0;
    len = sizeof got;
    getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len);
    granted_ = static_cast<std::uint64_t>(got) / 2;  // what it grew to in an earlier run
}

void EventSocket::set_reliable_delivery(bool on) {
    const int value = on ? 1 : 0;
    const int fd = mnl_socket_get_fd(nl_);
    if (setsockopt(fd, SOL_NETLINK, NETLINK_BROADCAST_ERROR, &value, sizeof value) != 0 ||
        setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &value, sizeof value) != 0) {
        throw std::runtime_error(std::string("cannot ") + (on ? "ask for" : "turn off") +
                                 " reliable conntrack events: " + std::strerror(errno));
    }
    reliable_ = on;
}

int EventSocket::fd() const {
    return mnl_socket_get_fd(nl_);
}

EventSocket::~EventSocket() {
    if (nl_ != nullptr) {
        mnl_socket_close(nl_);
    }
}

std::uint64_t EventSocket::set_buffer(std::uint64_t bytes) {
    const int fd = mnl_socket_get_fd(nl_);
    int want = static_cast<int>(std::min<std::uint64_t>(bytes, INT32_MAX / 2));
    // FORCE bypasses rmem_max (root); fall back to the capped call otherwise.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) != 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
    }
    int got = 0;
    socklen_t len = sizeof got;
    getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len);
    granted_ = static_cast<std::uint64_t>(got) / 2;  // the kernel reports double
    return granted_;
}

std::uint64_t EventSocket::grow(std::uint64_t max) {
    return set_buffer(std::min(max, granted_ * 2));
}

void EventSocket::land_in(std::span<std::byte> area) {
    landing_ = std::make_unique<EventLanding>(area);
}

ReadStatus EventSocket::read(std::vector<core::FlowSample>& out, int timeout_ms,
                             const Persist& persist) {
    if (persist && !landing_) {
        throw std::logic_error("EventSocket::read with persist needs land_in first");
    }
    const bool landed = persist && landing_->landed() > 0;
    pollfd pfd{fd(), POLLIN, 0};
    const int ready = landed ? 1 : ::poll(&pfd, 1, timeout_ms);
    if (ready == 0 || (ready < 0 && errno == EINTR)) {
        return dropped_since_last_read() ? ReadStatus::Overrun : ReadStatus::Timeout;
    }
    const ReadStatus status = persist ? read_landed(out, persist) : read_batch(out);
    if (status == ReadStatus::Ok && dropped_since_last_read()) {
        return ReadStatus::Overrun;
    }
    return status;
}

void EventSocket::parse(const void* data, std::size_t len, std::vector<core::FlowSample>& out) {
    Context ctx{&out, &stats_};
    mnl_cb_run(data, len, 0, 0, on_message, &ctx);
}

ReadStatus EventSocket::read_batch(std::vector<core::FlowSample>& out) {
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    std::memset(msgs, 0, sizeof msgs);
    for (unsigned i = 0; i < kBatch; ++i) {
        iov[i] = {storage_.data() + i * kDatagram, kDatagram};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(fd(), msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
        last_errno_ = errno;
        if (errno == EAGAIN || errno == EINTR) {
            return ReadStatus::Timeout;
        }
        return errno == ENOBUFS ? ReadStatus::Overrun : ReadStatus::Error;
    }
    for (int i = 0; i < n; ++i) {
        parse(iov[i].iov_base, msgs[i].msg_len, out);
    }
    return ReadStatus::Ok;
}

// Land a batch, persist its events, release it. What is still landed (a
// refused persist, or a killed process's batch) goes first, without a new read.
ReadStatus EventSocket::read_landed(std::vector<core::FlowSample>& out, const Persist& persist) {
    if (landing_->landed() == 0 && landing_->receive(fd()) < 0) {
        last_errno_ = errno;
        if (errno == EAGAIN || errno == EINTR) {
            return ReadStatus::Timeout;
        }
        return errno == ENOBUFS ? ReadStatus::Overrun : ReadStatus::Error;
    }
    const std::size_t first = out.size();
    landing_->for_each([&](const void* data, std::size_t len) { parse(data, len, out); });
    if (out.size() > first && !persist(std::span(out).subspan(first))) {
        out.resize(first);
        return ReadStatus::Held;
    }
    landing_->release();  // persisted now
    return ReadStatus::Ok;
}

bool EventSocket::dropped_since_last_read() {
    if (!reliable_) {
        return false;  // without reliable delivery an overrun is ENOBUFS from recv
    }
    std::uint32_t info[SK_MEMINFO_VARS] = {};
    socklen_t len = sizeof info;
    if (getsockopt(fd(), SOL_SOCKET, SO_MEMINFO, info, &len) != 0) {
        return false;
    }
    const bool dropped = info[SK_MEMINFO_DROPS] != drops_seen_;
    drops_seen_ = info[SK_MEMINFO_DROPS];
    return dropped;
}

}  // namespace ctquota::conntrack
