#include "enforce/tc_netlink.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>

#include "enforce/enforcer.hpp"
#include "enforce/tc_messages.hpp"

namespace ctquota::enforce {
namespace {

std::string errno_text(int err) {
    return std::strerror(err);
}

using Attrs = std::array<const nlattr*, 32>;

int collect(const nlattr* a, void* data) {
    auto* tb = static_cast<Attrs*>(data);
    const auto type = mnl_attr_get_type(a);
    if (type < tb->size()) {
        (*tb)[type] = a;
    }
    return MNL_CB_OK;
}

struct ClassDump {
    int ifindex;
    std::map<std::uint32_t, std::uint64_t>* out;
};

bool is_leaf_handle(std::uint32_t handle) {
    const auto major = handle >> 16;
    return major >= kHtbFirstShardMajor && major < kHtbFirstShardMajor + kHtbShards &&
           TC_H_MIN(handle) != 0;
}

int on_class(const nlmsghdr* nlh, void* data) {
    auto* d = static_cast<ClassDump*>(data);
    if (nlh->nlmsg_type != RTM_NEWTCLASS) {
        return MNL_CB_OK;
    }
    const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(nlh));
    if (t->tcm_ifindex != d->ifindex || !is_leaf_handle(t->tcm_handle)) {
        return MNL_CB_OK;
    }
    Attrs tb{};
    mnl_attr_parse(nlh, sizeof(tcmsg), collect, &tb);
    if (tb[TCA_KIND] == nullptr || std::strcmp(mnl_attr_get_str(tb[TCA_KIND]), "htb") != 0 ||
        tb[TCA_OPTIONS] == nullptr) {
        return MNL_CB_OK;
    }
    Attrs opts{};
    mnl_attr_parse_nested(tb[TCA_OPTIONS], collect, &opts);
    std::uint64_t rate = 0;
    if (opts[TCA_HTB_PARMS] != nullptr &&
        mnl_attr_get_payload_len(opts[TCA_HTB_PARMS]) >= sizeof(tc_htb_opt)) {
        tc_htb_opt opt{};
        std::memcpy(&opt, mnl_attr_get_payload(opts[TCA_HTB_PARMS]), sizeof opt);
        rate = opt.rate.rate;
    }
    if (opts[TCA_HTB_RATE64] != nullptr) {
        rate = mnl_attr_get_u64(opts[TCA_HTB_RATE64]);
    }
    (*d->out)[t->tcm_handle] = rate * 8;
    return MNL_CB_OK;
}

struct RootInfo {
    int ifindex;
    bool htb_root = false;
};

int on_qdisc(const nlmsghdr* nlh, void* data) {
    auto* r = static_cast<RootInfo*>(data);
    const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(nlh));
    if (nlh->nlmsg_type != RTM_NEWQDISC || t->tcm_ifindex != r->ifindex ||
        t->tcm_parent != TC_H_ROOT) {
        return MNL_CB_OK;
    }
    Attrs tb{};
    mnl_attr_parse(nlh, sizeof(tcmsg), collect, &tb);
    if (tb[TCA_KIND] != nullptr && std::strcmp(mnl_attr_get_str(tb[TCA_KIND]), "htb") == 0 &&
        t->tcm_handle == kMajor) {
        r->htb_root = true;
    }
    return MNL_CB_OK;
}

struct LeafQueueDump {
    int ifindex;
    std::set<std::uint32_t>* out;
};

int on_leaf_queue(const nlmsghdr* nlh, void* data) {
    auto* d = static_cast<LeafQueueDump*>(data);
    const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(nlh));
    if (nlh->nlmsg_type != RTM_NEWQDISC || t->tcm_ifindex != d->ifindex ||
        !is_leaf_handle(t->tcm_parent)) {
        return MNL_CB_OK;
    }
    Attrs tb{};
    mnl_attr_parse(nlh, sizeof(tcmsg), collect, &tb);
    if (tb[TCA_KIND] != nullptr && std::strcmp(mnl_attr_get_str(tb[TCA_KIND]), "tbf") == 0) {
        d->out->insert(t->tcm_parent);
    }
    return MNL_CB_OK;
}

std::uint32_t mtu_of(const std::string& interface) {
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, interface.c_str(), IFNAMSIZ - 1);
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const int rc = fd < 0 ? -1 : ioctl(fd, SIOCGIFMTU, &ifr);
    if (fd >= 0) {
        close(fd);
    }
    if (rc < 0) {
        throw EnforceError("cannot read the MTU of " + interface + ": " + errno_text(errno));
    }
    return static_cast<std::uint32_t>(ifr.ifr_mtu);
}

}  // namespace

TcLink::TcLink(std::string interface, std::uint32_t direct_queue_packets)
    : interface_(std::move(interface)), direct_queue_packets_(direct_queue_packets) {
    dev_.ifindex = static_cast<int>(if_nametoindex(interface_.c_str()));
    if (dev_.ifindex == 0) {
        throw EnforceError("subscriber interface " + interface_ +
                           " not found: " + errno_text(errno));
    }
    dev_.mtu = mtu_of(interface_);
    nl_ = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (nl_ == nullptr || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
        throw EnforceError("cannot open an rtnetlink socket: " + errno_text(errno));
    }
    portid_ = mnl_socket_get_portid(nl_);
    // One batch may carry tens of thousands of class messages.
    int size = 64 << 20;
    setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
    setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    int one = 1;
    mnl_socket_setsockopt(nl_, NETLINK_CAP_ACK, &one, sizeof one);
    mnl_socket_setsockopt(nl_, NETLINK_EXT_ACK, &one, sizeof one);
}

TcLink::~TcLink() {
    if (nl_ != nullptr) {
        mnl_socket_close(nl_);
    }
}

int TcLink::transact(std::vector<char>& buf) {
    if (mnl_socket_sendto(nl_, buf.data(), buf.size()) < 0) {
        return -errno;
    }
    std::vector<char> rx(MNL_SOCKET_BUFFER_SIZE);
    const auto* sent = reinterpret_cast<const nlmsghdr*>(buf.data());
    while (true) {
        const auto n = mnl_socket_recvfrom(nl_, rx.data(), rx.size());
        if (n < 0) {
            return -errno;
        }
        const int rc = mnl_cb_run(rx.data(), static_cast<std::size_t>(n), sent->nlmsg_seq, portid_,
                                  nullptr, nullptr);
        if (rc <= MNL_CB_STOP) {
            return rc < 0 ? -errno : 0;
        }
    }
}

bool TcLink::htb_root_present() {
    RootInfo info{dev_.ifindex};
    dump(RTM_GETQDISC, on_qdisc, &info);
    return info.htb_root;
}

std::string TcLink::root_damage() {
    const auto now = static_cast<int>(if_nametoindex(interface_.c_str()));
    if (now == 0) {
        return "subscriber interface " + interface_ + " is gone";
    }
    if (now != dev_.ifindex) {
        return "subscriber interface " + interface_ + " was created again (index " +
               std::to_string(dev_.ifindex) + " -> " + std::to_string(now) + ")";
    }
    return htb_root_present() ? std::string()
                              : "the HTB root qdisc 1: on " + interface_ + " is gone";
}

void TcLink::ensure_root() {
    if (!htb_root_present()) {
        std::vector<char> add;
        put_htb_qdisc(add, dev_.ifindex, kMajor, TC_H_ROOT,
                      NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK, ++seq_,
                      direct_queue_packets_);
        if (const int rc = transact(add); rc != 0) {
            throw EnforceError("tc: cannot create the HTB root qdisc 1: on " + interface_ + ": " +
                               errno_text(-rc));
        }
    }
    // Shards: created when missing, left alone (EEXIST) when present.
    std::vector<char> buf;
    const std::uint32_t first_seq = seq_ + 1;
    for (std::uint32_t k = 0; k < kHtbShards; ++k) {
        put_htb_class(buf, dev_.ifindex, kMajor | (k + 1), kMajor, 100'000'000'000ull,
                      NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, ++seq_);
        put_htb_qdisc(buf, dev_.ifindex, (kHtbFirstShardMajor + k) << 16, kMajor | (k + 1),
                      NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, ++seq_);
    }
    const int prog = load_shard_program();
    if (prog < 0) {
        throw EnforceError("tc: cannot load the shard classifier (eBPF): " + errno_text(errno));
    }
    put_shard_filter(buf, dev_.ifindex, prog, ++seq_);
    const auto errors = send_batch(buf, first_seq);
    close(prog);  // the filter holds its own reference
    for (const auto& [index, err] : errors) {
        if (err != EEXIST) {
            throw EnforceError("tc: cannot set up the HTB shards on " + interface_ + " (message " +
                               std::to_string(index) + "): " + errno_text(err));
        }
    }
}

void TcLink::remove_root() {
    std::vector<char> del;
    auto* nlh = put_header(del, RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, ++seq_);
    put_tcmsg(nlh, dev_.ifindex, kMajor, TC_H_ROOT);
    finish(del, nlh);
    transact(del);  // absent already: fine
}

std::map<std::uint32_t, std::uint64_t> TcLink::dump_classes() {
    std::map<std::uint32_t, std::uint64_t> out;
    ClassDump d{dev_.ifindex, &out};
    dump(RTM_GETTCLASS, on_class, &d);
    return out;
}

std::set<std::uint32_t> TcLink::dump_leaf_queues() {
    std::set<std::uint32_t> out;
    LeafQueueDump d{dev_.ifindex, &out};
    dump(RTM_GETQDISC, on_leaf_queue, &d);
    return out;
}

void TcLink::dump(std::uint16_t type, int (*cb)(const nlmsghdr*, void*), void* data) {
    const char* what = type == RTM_GETQDISC ? "qdisc" : "class";
    const char* whats = type == RTM_GETQDISC ? "qdiscs" : "classes";
    std::vector<char> req;
    auto* nlh = put_header(req, type, NLM_F_REQUEST | NLM_F_DUMP, ++seq_);
    put_tcmsg(nlh, dev_.ifindex, 0, 0);
    finish(req, nlh);
    if (mnl_socket_sendto(nl_, req.data(), req.size()) < 0) {
        throw EnforceError(std::string("tc: cannot dump the ") + whats + " of " + interface_ +
                           ": " + errno_text(errno));
    }
    std::vector<char> rx(1 << 20);
    while (true) {
        const auto n = mnl_socket_recvfrom(nl_, rx.data(), rx.size());
        const int rc =
            n < 0 ? -1
                  : mnl_cb_run(rx.data(), static_cast<std::size_t>(n), seq_, portid_, cb, data);
        if (rc < 0) {
            throw EnforceError(std::string("tc: ") + what + " dump of " + interface_ + ": " +
                               errno_text(errno));
        }
        if (rc == MNL_CB_STOP) {
            return;
        }
    }
}

TcResult TcLink::run(const std::vector<TcOp>& ops) {
    TcResult result;
    if (ops.empty()) {
        return result;
    }
    // Only the last message asks for an ACK: failures are reported anyway
    // (the kernel goes on with the next message), and the last ACK tells us
    // every message before it was processed.
    const std::uint32_t first_seq = seq_ + 1;
    std::vector<char> buf;
    buf.reserve(ops.size() * 192);
    std::vector<std::size_t> op_of_message;  // a Set's second message is its leaf queue
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const auto n = append_class_message(buf, dev_, ops[i], seq_ + 1, false);
        seq_ += static_cast<std::uint32_t>(n);
        op_of_message.insert(op_of_message.end(), n, i);
    }
    result.messages = op_of_message.size();
    for (const auto& [index, err] : send_batch(buf, first_seq)) {
        const auto op = op_of_message.at(index);
        const bool leaf = index > 0 && op_of_message[index - 1] == op;
        (leaf ? result.leaf_errors : result.errors).emplace_back(op, errno_text(err));
    }
    return result;
}

std::vector<std::pair<std::size_t, int>> TcLink::send_batch(std::vector<char>& buf,
                                                            std::uint32_t first_seq) {
    std::vector<std::pair<std::size_t, int>> errors;
    const std::uint32_t last_seq = seq_;
    const std::size_t count = last_seq - first_seq + 1;
    auto fail_all = [&](int err) {
        for (std::size_t i = 0; i < count; ++i) {
            errors.emplace_back(i, err);
        }
        return errors;
    };
    // The last message asks for an ACK (others report only failures).
    auto* last = reinterpret_cast<nlmsghdr*>(buf.data());
    for (int len = static_cast<int>(buf.size()); mnl_nlmsg_ok(last, len);) {
        auto* next = mnl_nlmsg_next(last, &len);
        if (!mnl_nlmsg_ok(next, len)) {
            break;
        }
        last = next;
    }
    last->nlmsg_flags |= NLM_F_ACK;
    if (mnl_socket_sendto(nl_, buf.data(), buf.size()) < 0) {
        return fail_all(errno);
    }
    std::vector<char> rx(1 << 20);
    bool done = false;
    while (!done) {
        const auto n = mnl_socket_recvfrom(nl_, rx.data(), rx.size());
        if (n < 0) {
            return fail_all(errno);
        }
        int len = static_cast<int>(n);
        for (auto* nlh = reinterpret_cast<const nlmsghdr*>(rx.data()); mnl_nlmsg_ok(nlh, len);
             nlh = mnl_nlmsg_next(nlh, &len)) {
            if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_seq < first_seq ||
                nlh->nlmsg_seq > last_seq) {
                continue;
            }
            const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
            if (err->error != 0) {
                errors.emplace_back(nlh->nlmsg_seq - first_seq, -err->error);
            }
            if (nlh->nlmsg_seq == last_seq) {
                done = true;
            }
        }
    }
    return errors;
}

}  // namespace ctquota::enforce
