#include "enforce/tc_netlink.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
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

#include <spdlog/spdlog.h>

#include "enforce/enforcer.hpp"
#include "enforce/tc_messages.hpp"
#include "enforce/tc_programs.hpp"

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

bool in_shard(std::uint32_t handle) {
    const auto major = handle >> 16;
    return major >= kHtbFirstShardMajor && major < kHtbFirstShardMajor + kHtbShards &&
           TC_H_MIN(handle) != 0;
}

bool is_subscriber_class(std::uint32_t handle) {
    return in_shard(handle) && leaf_queue_handle(handle) != 0;
}

int on_class(const nlmsghdr* nlh, void* data) {
    auto* d = static_cast<ClassDump*>(data);
    if (nlh->nlmsg_type != RTM_NEWTCLASS) {
        return MNL_CB_OK;
    }
    const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(nlh));
    if (t->tcm_ifindex != d->ifindex || !is_subscriber_class(t->tcm_handle)) {
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
    bool shard_filter = false;  // an older ctquotad's root (on the subscriber interface)
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
    std::set<std::uint32_t> tbf;    // subscriber classes with our tbf under them
    std::set<std::uint32_t> bands;  // tbf handles with pfifo_fast under them
};

int on_leaf_queue(const nlmsghdr* nlh, void* data) {
    auto* d = static_cast<LeafQueueDump*>(data);
    const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(nlh));
    if (nlh->nlmsg_type != RTM_NEWQDISC || t->tcm_ifindex != d->ifindex) {
        return MNL_CB_OK;
    }
    Attrs tb{};
    mnl_attr_parse(nlh, sizeof(tcmsg), collect, &tb);
    const char* kind = tb[TCA_KIND] != nullptr ? mnl_attr_get_str(tb[TCA_KIND]) : "";
    if (std::strcmp(kind, "tbf") == 0 && is_subscriber_class(t->tcm_parent) &&
        t->tcm_handle == leaf_queue_handle(t->tcm_parent)) {
        d->tbf.insert(t->tcm_parent);
    } else if (std::strcmp(kind, "pfifo_fast") == 0 && TC_H_MIN(t->tcm_parent) == 1) {
        d->bands.insert(TC_H_MAJ(t->tcm_parent));
    }
    return MNL_CB_OK;
}

struct FilterDump {
    int ifindex;
    const char* name;
    bool found = false;
};

// A cls_bpf filter of ours, by the name its program was attached with.
int on_filter(const nlmsghdr* nlh, void* data) {
    auto* d = static_cast<FilterDump*>(data);
    const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(nlh));
    if (nlh->nlmsg_type != RTM_NEWTFILTER || t->tcm_ifindex != d->ifindex) {
        return MNL_CB_OK;
    }
    Attrs tb{};
    mnl_attr_parse(nlh, sizeof(tcmsg), collect, &tb);
    if (tb[TCA_KIND] == nullptr || std::strcmp(mnl_attr_get_str(tb[TCA_KIND]), "bpf") != 0 ||
        tb[TCA_OPTIONS] == nullptr) {
        return MNL_CB_OK;
    }
    Attrs opts{};
    mnl_attr_parse_nested(tb[TCA_OPTIONS], collect, &opts);
    if (opts[TCA_BPF_NAME] != nullptr &&
        std::strcmp(mnl_attr_get_str(opts[TCA_BPF_NAME]), d->name) == 0) {
        d->found = true;
    }
    return MNL_CB_OK;
}

struct LinkKind {
    std::string kind;
};

int on_link(const nlmsghdr* nlh, void* data) {
    auto* d = static_cast<LinkKind*>(data);
    if (nlh->nlmsg_type != RTM_NEWLINK) {
        return MNL_CB_OK;
    }
    Attrs tb{};
    mnl_attr_parse(nlh, sizeof(ifinfomsg), collect, &tb);
    if (tb[IFLA_LINKINFO] != nullptr) {
        Attrs info{};
        mnl_attr_parse_nested(tb[IFLA_LINKINFO], collect, &info);
        if (info[IFLA_INFO_KIND] != nullptr) {
            d->kind = mnl_attr_get_str(info[IFLA_INFO_KIND]);
        }
    }
    return MNL_CB_OK;
}

int index_of(const std::string& name) {
    return static_cast<int>(if_nametoindex(name.c_str()));
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

TcLink::TcLink(TcConfig config, std::shared_ptr<const TcPrograms> programs)
    : config_(std::move(config)), programs_(std::move(programs)) {
    dev_.ifindex = index_of(config_.interface);
    if (dev_.ifindex == 0) {
        throw EnforceError("subscriber interface " + config_.interface +
                           " not found: " + errno_text(errno));
    }
    if (config_.shaper.empty() || config_.shaper.size() >= IFNAMSIZ) {
        throw EnforceError("shaper interface name '" + config_.shaper + "' is not a valid name");
    }
    dev_.mtu = mtu_of(config_.interface);
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

bool TcLink::htb_root_present(int ifindex) {
    RootInfo info{ifindex};
    dump(RTM_GETQDISC, ifindex, 0, on_qdisc, &info);
    return info.htb_root;
}

bool TcLink::redirect_present() {
    FilterDump d{dev_.ifindex, kRedirectFilterName};
    dump(RTM_GETTFILTER, dev_.ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS), on_filter, &d);
    return d.found;
}

std::string TcLink::root_damage() {
    const auto now = index_of(config_.interface);
    if (now == 0) {
        return "subscriber interface " + config_.interface + " is gone";
    }
    if (now != dev_.ifindex) {
        return "subscriber interface " + config_.interface + " was created again (index " +
               std::to_string(dev_.ifindex) + " -> " + std::to_string(now) + ")";
    }
    const auto shaper = index_of(config_.shaper);
    if (shaper == 0 || shaper != shaper_) {
        return "shaper " + config_.shaper + (shaper == 0 ? " is gone" : " was created again");
    }
    if (!htb_root_present(shaper_)) {
        return "the HTB root qdisc 1: on " + config_.shaper + " is gone";
    }
    return redirect_present() ? std::string()
                              : "the redirect filter on " + config_.interface + " is gone";
}

// An HTB root with our shard classifier, on the subscriber interface itself:
// what ctquotad put there before the shaper existed. Ours, so it goes.
void TcLink::remove_old_root() {
    if (!htb_root_present(dev_.ifindex)) {
        return;
    }
    FilterDump d{dev_.ifindex, "ctquota_shard"};
    dump(RTM_GETTFILTER, dev_.ifindex, kMajor, on_filter, &d);
    if (!d.found) {
        return;  // somebody else's HTB: not ours to touch
    }
    std::vector<char> del;
    auto* nlh = put_header(del, RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, ++seq_);
    put_tcmsg(nlh, dev_.ifindex, kMajor, TC_H_ROOT);
    finish(del, nlh);
    if (const int rc = transact(del); rc != 0 && rc != -ENOENT) {
        throw EnforceError("tc: cannot remove the old HTB root from " + config_.interface + ": " +
                           errno_text(-rc));
    }
    spdlog::info("enforce: removed the HTB root an older ctquotad left on {}", config_.interface);
}

void TcLink::ensure_shaper() {
    shaper_ = index_of(config_.shaper);
    if (shaper_ != 0) {
        LinkKind kind;
        std::vector<char> req;
        auto* nlh = put_header(req, RTM_GETLINK, NLM_F_REQUEST, ++seq_);
        auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
        ifi->ifi_index = shaper_;
        finish(req, nlh);
        request(req, on_link, &kind);
        if (kind.kind != "ifb") {
            throw EnforceError("shaper " + config_.shaper + " exists and is not an ifb device (" +
                               (kind.kind.empty() ? "no kind" : kind.kind) +
                               "): choose another [enforce] shaper_interface");
        }
    } else {
        std::vector<char> add;
        put_new_ifb(add, config_.shaper, dev_.mtu, config_.leaf_queue_packets, ++seq_);
        if (const int rc = transact(add); rc != 0 && rc != -EEXIST) {
            throw EnforceError("cannot create the shaper " + config_.shaper +
                               " (ifb): " + errno_text(-rc));
        }
        shaper_ = index_of(config_.shaper);
    }
    std::vector<char> up;
    auto* nlh = put_header(up, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, ++seq_);
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifi->ifi_index = shaper_;
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    finish(up, nlh);
    if (const int rc = transact(up); rc != 0) {
        throw EnforceError("cannot set the shaper " + config_.shaper + " up: " + errno_text(-rc));
    }
}

void TcLink::ensure_redirect() {
    std::vector<char> clsact;
    put_clsact_qdisc(clsact, dev_.ifindex, ++seq_);
    if (const int rc = transact(clsact); rc != 0 && rc != -EEXIST) {
        throw EnforceError("tc: cannot add a clsact qdisc to " + config_.interface + ": " +
                           errno_text(-rc));
    }
    std::vector<char> filter;
    put_redirect_filter(filter, dev_.ifindex, programs_->redirect(), shaper_, ++seq_);
    if (const int rc = transact(filter); rc != 0) {
        throw EnforceError("tc: cannot add the redirect filter to " + config_.interface + ": " +
                           errno_text(-rc));
    }
}

void TcLink::ensure_root() {
    remove_old_root();
    ensure_shaper();
    if (!htb_root_present(shaper_)) {
        std::vector<char> add;
        put_htb_qdisc(add, shaper_, kMajor, TC_H_ROOT,
                      NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK, ++seq_,
                      config_.direct_queue_packets);
        if (const int rc = transact(add); rc != 0) {
            throw EnforceError("tc: cannot create the HTB root qdisc 1: on " + config_.shaper +
                               ": " + errno_text(-rc));
        }
    }
    // Shards: created when missing, left alone (EEXIST) when present.
    std::vector<char> buf;
    const std::uint32_t first_seq = seq_ + 1;
    for (std::uint32_t k = 0; k < kHtbShards; ++k) {
        const HtbClassSpec shard{kMajor | (k + 1), kMajor, 100'000'000'000ull, 100'000'000'000ull,
                                 0};
        put_htb_class(buf, shaper_, shard, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, ++seq_);
        put_htb_qdisc(buf, shaper_, (kHtbFirstShardMajor + k) << 16, kMajor | (k + 1),
                      NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, ++seq_);
    }
    put_classifier(buf, shaper_, kMajor, programs_->shard(), "ctquota_shard", ++seq_);
    for (std::uint32_t k = 0; k < kHtbShards; ++k) {
        put_classifier(buf, shaper_, (kHtbFirstShardMajor + k) << 16, programs_->band(),
                       "ctquota_band", ++seq_);
    }
    const auto errors = send_batch(buf, first_seq);
    for (const auto& [index, err] : errors) {
        if (err != EEXIST) {
            throw EnforceError("tc: cannot set up the HTB shards on " + config_.shaper +
                               " (message " + std::to_string(index) + "): " + errno_text(err));
        }
    }
    ensure_redirect();  // last: nothing is redirected to a shaper not ready for it
}

void TcLink::remove_root() {
    std::vector<char> filter;
    put_delete_redirect_filter(filter, dev_.ifindex, ++seq_);
    transact(filter);  // absent already: fine
    if (const auto shaper = index_of(config_.shaper); shaper != 0) {
        std::vector<char> del;
        put_delete_link(del, shaper, ++seq_);
        transact(del);  // its qdiscs and classes go with it
    }
}

std::map<std::uint32_t, std::uint64_t> TcLink::dump_classes() {
    std::map<std::uint32_t, std::uint64_t> out;
    ClassDump d{shaper_, &out};
    dump(RTM_GETTCLASS, shaper_, 0, on_class, &d);
    return out;
}

std::set<std::uint32_t> TcLink::dump_leaf_queues() {
    LeafQueueDump d{shaper_, {}, {}};
    dump(RTM_GETQDISC, shaper_, 0, on_leaf_queue, &d);
    std::set<std::uint32_t> out;
    for (const auto subscriber_class : d.tbf) {
        if (d.bands.contains(leaf_queue_handle(subscriber_class))) {
            out.insert(subscriber_class);
        }
    }
    return out;
}

void TcLink::request(std::vector<char>& req, int (*cb)(const nlmsghdr*, void*), void* data) {
    const auto* sent = reinterpret_cast<const nlmsghdr*>(req.data());
    const auto seq = sent->nlmsg_seq;
    if (mnl_socket_sendto(nl_, req.data(), req.size()) < 0) {
        throw EnforceError(std::string("rtnetlink request failed: ") + errno_text(errno));
    }
    std::vector<char> rx(1 << 20);
    while (true) {
        const auto n = mnl_socket_recvfrom(nl_, rx.data(), rx.size());
        const int rc =
            n < 0 ? -1 : mnl_cb_run(rx.data(), static_cast<std::size_t>(n), seq, portid_, cb, data);
        if (rc < 0) {
            throw EnforceError(std::string("rtnetlink request failed: ") + errno_text(errno));
        }
        if (rc == MNL_CB_STOP || (sent->nlmsg_flags & NLM_F_DUMP) == 0) {
            return;
        }
    }
}

void TcLink::dump(std::uint16_t type, int ifindex, std::uint32_t parent,
                  int (*cb)(const nlmsghdr*, void*), void* data) {
    std::vector<char> req;
    auto* nlh = put_header(req, type, NLM_F_REQUEST | NLM_F_DUMP, ++seq_);
    put_tcmsg(nlh, ifindex, 0, parent);
    finish(req, nlh);
    try {
        request(req, cb, data);
    } catch (const EnforceError& e) {
        const char* what = type == RTM_GETQDISC    ? "qdisc"
                           : type == RTM_GETTCLASS ? "class"
                                                   : "filter";
        throw EnforceError(std::string("tc: ") + what + " dump on index " +
                           std::to_string(ifindex) + ": " + e.what());
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
    std::vector<std::size_t> op_of_message;
    std::vector<bool> is_queue;  // a Set's messages after the first are its leaf queue's
    const TcDevice shaper{shaper_, dev_.mtu};
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const auto n = append_class_message(buf, shaper, ops[i], seq_ + 1, false);
        seq_ += static_cast<std::uint32_t>(n);
        for (std::size_t m = 0; m < n; ++m) {
            op_of_message.push_back(i);
            is_queue.push_back(ops[i].kind == TcOp::Kind::Set && m > 0);
        }
    }
    result.messages = op_of_message.size();
    std::set<std::size_t> reported;  // one error per op and kind is enough
    for (const auto& [index, err] : send_batch(buf, first_seq)) {
        const auto op = op_of_message.at(index);
        const bool queue = is_queue.at(index);
        if (reported.insert(op * 2 + (queue ? 1 : 0)).second) {
            (queue ? result.leaf_errors : result.errors).emplace_back(op, errno_text(err));
        }
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
