#include "enforce/conntrack_flush.hpp"

#include "core/subscriber_index.hpp"

#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace ctquota::enforce {
namespace {

struct HandleCloser {
    void operator()(nfct_handle* h) const { nfct_close(h); }
};
struct CtDeleter {
    void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};
using CtPtr = std::unique_ptr<nf_conntrack, CtDeleter>;

struct DumpContext {
    // The blocked prefixes as one index (a hash lookup per prefix length in
    // use): one pass over the table costs O(entries x lengths), not
    // O(entries x prefixes) (10k subscribers, 200k entries: 26.7 s -> see
    // tests/bench/RESULTS.md).
    core::SubscriberIndex blocked;
    std::vector<CtPtr> matches;

    bool has(const core::IpAddress& a) const {
        return blocked.lookup(a, core::TimePoint{}).has_value();
    }
};

core::SubscriberIndex index_of(const std::vector<core::Prefix>& prefixes) {
    std::vector<core::Binding> bindings;
    bindings.reserve(prefixes.size());
    for (const auto& p : prefixes) {
        bindings.push_back(core::Binding{1, p, core::TimePoint{}, std::nullopt});
    }
    return core::SubscriberIndex(std::move(bindings));
}

core::IpAddress address_of(const nf_conntrack* ct, bool v6, nf_conntrack_attr a4,
                           nf_conntrack_attr a6) {
    return v6 ? core::IpAddress::v6_bytes(nfct_get_attr(ct, a6))
              : core::IpAddress::v4_bytes(nfct_get_attr(ct, a4));
}

int on_entry(enum nf_conntrack_msg_type, nf_conntrack* ct, void* data) {
    auto* ctx = static_cast<DumpContext*>(data);
    const auto l3 = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
    if (l3 != AF_INET && l3 != AF_INET6) {
        return NFCT_CB_CONTINUE;
    }
    const bool v6 = l3 == AF_INET6;
    const auto orig_src = address_of(ct, v6, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC);
    const auto orig_dst = address_of(ct, v6, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
    const auto repl_dst = address_of(ct, v6, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST);
    if (ctx->has(orig_src) || ctx->has(orig_dst) || ctx->has(repl_dst)) {
        ctx->matches.emplace_back(nfct_clone(ct));
    }
    return NFCT_CB_CONTINUE;
}

struct MnlCloser {
    void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};

// Reads the acks of `pending` DELETE requests (NETLINK_CAP_ACK: small ones).
void read_acks(mnl_socket* sock, std::size_t pending, ConntrackFlushResult& result) {
    std::vector<char> buf(1 << 16);
    while (pending > 0) {
        const auto n = mnl_socket_recvfrom(sock, buf.data(), buf.size());
        if (n <= 0) {
            result.error = std::string("conntrack delete: ") + std::strerror(errno);
            return;
        }
        auto len = static_cast<int>(n);
        for (auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len);
             nlh = mnl_nlmsg_next(nlh, &len)) {
            if (nlh->nlmsg_type != NLMSG_ERROR) {
                continue;
            }
            --pending;
            const int err = -static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh))->error;
            if (err == 0) {
                ++result.deleted;
            } else if (err != ENOENT && result.error.empty()) {  // ENOENT: it ended meanwhile
                result.error = std::string("conntrack delete: ") + std::strerror(err);
            }
        }
    }
}

// One DELETE per entry (by tuple and id, so a new connection on the same
// tuple stays), as many per sendmsg as fit in 64 KiB: one system call per
// few hundred entries instead of a round trip each.
void delete_batched(const std::vector<CtPtr>& entries, ConntrackFlushResult& result) {
    if (entries.empty()) {
        return;
    }
    std::unique_ptr<mnl_socket, MnlCloser> sock(mnl_socket_open(NETLINK_NETFILTER));
    if (!sock || mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
        result.error = std::string("conntrack delete: netlink socket: ") + std::strerror(errno);
        return;
    }
    int on = 1;
    mnl_socket_setsockopt(sock.get(), NETLINK_CAP_ACK, &on, sizeof on);
    int rcvbuf = 4 << 20;  // a batch's acks arrive at once; each takes ~1 KiB of buffer
    setsockopt(mnl_socket_get_fd(sock.get()), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    timeval patience{5, 0};  // an ack that never comes is an error, not a hang
    setsockopt(mnl_socket_get_fd(sock.get()), SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
    std::vector<char> buf(1 << 16);
    constexpr std::size_t kMaxMessage = 4096;  // one entry's DELETE is a few hundred bytes
    std::uint32_t seq = 0;
    for (std::size_t i = 0; i < entries.size() && result.error.empty();) {
        std::size_t used = 0;
        std::size_t pending = 0;
        for (; i < entries.size() && used + kMaxMessage <= buf.size(); ++i, ++pending) {
            auto* nlh = mnl_nlmsg_put_header(buf.data() + used);
            nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
            nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
            nlh->nlmsg_seq = ++seq;
            auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
            nfg->nfgen_family = nfct_get_attr_u8(entries[i].get(), ATTR_ORIG_L3PROTO);
            nfg->version = NFNETLINK_V0;
            nfg->res_id = 0;
            nfct_nlmsg_build(nlh, entries[i].get());
            used += MNL_ALIGN(nlh->nlmsg_len);
        }
        if (mnl_socket_sendto(sock.get(), buf.data(), used) < 0) {
            result.error = std::string("conntrack delete: ") + std::strerror(errno);
        } else {
            read_acks(sock.get(), pending, result);
        }
    }
}

}  // namespace

ConntrackFlushResult delete_conntrack_entries(const std::vector<core::Prefix>& prefixes) {
    ConntrackFlushResult result;
    if (prefixes.empty()) {
        return result;
    }
    std::unique_ptr<nfct_handle, HandleCloser> h(nfct_open(CONNTRACK, 0));
    if (!h) {
        result.error = std::string("nfct_open: ") + std::strerror(errno);
        return result;
    }
    int size = 8 << 20;
    setsockopt(nfct_fd(h.get()), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    DumpContext ctx{index_of(prefixes), {}};
    nfct_callback_register(h.get(), NFCT_T_ALL, on_entry, &ctx);
    std::uint32_t family = AF_UNSPEC;
    if (nfct_query(h.get(), NFCT_Q_DUMP, &family) < 0) {
        result.error = std::string("conntrack dump: ") + std::strerror(errno);
        return result;
    }
    nfct_callback_unregister(h.get());
    delete_batched(ctx.matches, result);
    return result;
}

}  // namespace ctquota::enforce
