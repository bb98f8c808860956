#include "enforce/conntrack_flush.hpp"

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
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
    const std::vector<core::Prefix>* prefixes;
    std::vector<CtPtr> matches;
};

bool in_any(const std::vector<core::Prefix>& prefixes, const core::IpAddress& a) {
    for (const auto& p : prefixes) {
        if (p.address.family == a.family && p.contains(a)) {
            return true;
        }
    }
    return false;
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
    if (in_any(*ctx->prefixes, orig_src) || in_any(*ctx->prefixes, orig_dst) ||
        in_any(*ctx->prefixes, repl_dst)) {
        ctx->matches.emplace_back(nfct_clone(ct));
    }
    return NFCT_CB_CONTINUE;
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
    DumpContext ctx{&prefixes, {}};
    nfct_callback_register(h.get(), NFCT_T_ALL, on_entry, &ctx);
    std::uint32_t family = AF_UNSPEC;
    if (nfct_query(h.get(), NFCT_Q_DUMP, &family) < 0) {
        result.error = std::string("conntrack dump: ") + std::strerror(errno);
        return result;
    }
    nfct_callback_unregister(h.get());
    for (const auto& ct : ctx.matches) {
        if (nfct_query(h.get(), NFCT_Q_DESTROY, ct.get()) == 0) {
            ++result.deleted;
        } else if (errno != ENOENT && result.error.empty()) {  // ENOENT: it ended meanwhile
            result.error = std::string("conntrack delete: ") + std::strerror(errno);
        }
    }
    return result;
}

}  // namespace ctquota::enforce
