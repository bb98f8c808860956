#include "conntrack/event_socket.hpp"

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "conntrack/sample_parser.hpp"

namespace ctquota::conntrack {
namespace {

constexpr unsigned kBatch = 128;         // datagrams per recvmmsg
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

EventSocket::EventSocket(std::uint64_t buffer_bytes) : storage_(kBatch * kDatagram) {
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
    set_buffer(buffer_bytes);
}

void EventSocket::enable_reliable_delivery() {
    int on = 1;
    if (setsockopt(mnl_socket_get_fd(nl_), SOL_NETLINK, NETLINK_BROADCAST_ERROR, &on, sizeof on) !=
        0) {
        throw std::runtime_error(std::string("cannot ask for reliable conntrack events: ") +
                                 std::strerror(errno));
    }
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

ReadStatus EventSocket::read(std::vector<core::FlowSample>& out, int timeout_ms) {
    const int fd = mnl_socket_get_fd(nl_);
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, timeout_ms);
    if (ready == 0 || (ready < 0 && errno == EINTR)) {
        return ReadStatus::Timeout;
    }
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    std::memset(msgs, 0, sizeof msgs);
    for (unsigned i = 0; i < kBatch; ++i) {
        iov[i] = {storage_.data() + i * kDatagram, kDatagram};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
        last_errno_ = errno;
        if (errno == EAGAIN || errno == EINTR) {
            return ReadStatus::Timeout;
        }
        return errno == ENOBUFS ? ReadStatus::Overrun : ReadStatus::Error;
    }
    Context ctx{&out, &stats_};
    for (int i = 0; i < n; ++i) {
        mnl_cb_run(iov[i].iov_base, msgs[i].msg_len, 0, 0, on_message, &ctx);
    }
    return ReadStatus::Ok;
}

}  // namespace ctquota::conntrack
