#include "conntrack/sample_parser.hpp"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>

#include <memory>

namespace ctquota::conntrack {
namespace {

struct CtDeleter {
    void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};

struct TupleAttrs {
    nf_conntrack_attr src4, dst4;
    nf_conntrack_attr src6, dst6;
    nf_conntrack_attr sport, dport;
    nf_conntrack_attr icmp_id, icmp_type, icmp_code;
    nf_conntrack_attr l4proto;
};

constexpr TupleAttrs kOrig = {ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_SRC,
                              ATTR_ORIG_IPV6_DST, ATTR_ORIG_PORT_SRC, ATTR_ORIG_PORT_DST,
                              ATTR_ICMP_ID,       ATTR_ICMP_TYPE,     ATTR_ICMP_CODE,
                              ATTR_ORIG_L4PROTO};
constexpr TupleAttrs kReply = {ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_SRC,
                               ATTR_REPL_IPV6_DST, ATTR_REPL_PORT_SRC, ATTR_REPL_PORT_DST,
                               ATTR_ICMP_ID,       ATTR_ICMP_TYPE,     ATTR_ICMP_CODE,
                               ATTR_REPL_L4PROTO};

std::uint64_t u64_or_zero(const nf_conntrack* ct, int attr) {
    return nfct_attr_is_set(ct, static_cast<nf_conntrack_attr>(attr)) > 0
               ? nfct_get_attr_u64(ct, static_cast<nf_conntrack_attr>(attr))
               : 0;
}

core::FlowTuple read_tuple(const nf_conntrack* ct, std::uint8_t l3, const TupleAttrs& a) {
    core::FlowTuple t;
    if (l3 == AF_INET) {
        t.src = core::IpAddress::v4_bytes(nfct_get_attr(ct, a.src4));
        t.dst = core::IpAddress::v4_bytes(nfct_get_attr(ct, a.dst4));
    } else {
        t.src = core::IpAddress::v6_bytes(nfct_get_attr(ct, a.src6));
        t.dst = core::IpAddress::v6_bytes(nfct_get_attr(ct, a.dst6));
    }
    t.l4proto = nfct_get_attr_u8(ct, a.l4proto);
    if (t.l4proto == IPPROTO_ICMP || t.l4proto == IPPROTO_ICMPV6) {
        t.src_port = ntohs(nfct_get_attr_u16(ct, a.icmp_id));
        t.dst_port = static_cast<std::uint16_t>((nfct_get_attr_u8(ct, a.icmp_type) << 8) |
                                                nfct_get_attr_u8(ct, a.icmp_code));
    } else if (nfct_attr_is_set(ct, a.sport) > 0) {
        t.src_port = ntohs(nfct_get_attr_u16(ct, a.sport));
        t.dst_port = ntohs(nfct_get_attr_u16(ct, a.dport));
    }
    return t;
}

}  // namespace

std::optional<core::FlowSample> sample_from_conntrack(const nf_conntrack* ct,
                                                      core::SampleKind kind) {
    if (nfct_attr_is_set(ct, ATTR_ORIG_L3PROTO) <= 0 ||
        nfct_attr_is_set(ct, ATTR_REPL_L3PROTO) <= 0) {
        return std::nullopt;
    }
    const std::uint8_t l3 = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
    if (l3 != AF_INET && l3 != AF_INET6) {
        return std::nullopt;
    }
    core::FlowSample s;
    s.kind = kind;
    s.id = nfct_attr_is_set(ct, ATTR_ID) > 0 ? nfct_get_attr_u32(ct, ATTR_ID) : 0;
    s.zone = nfct_attr_is_set(ct, ATTR_ZONE) > 0 ? nfct_get_attr_u16(ct, ATTR_ZONE) : 0;
    s.mark = nfct_attr_is_set(ct, ATTR_MARK) > 0 ? nfct_get_attr_u32(ct, ATTR_MARK) : 0;
    s.orig = read_tuple(ct, l3, kOrig);
    s.reply = read_tuple(ct, l3, kReply);
    s.orig_counters = {u64_or_zero(ct, ATTR_ORIG_COUNTER_BYTES),
                       u64_or_zero(ct, ATTR_ORIG_COUNTER_PACKETS)};
    s.reply_counters = {u64_or_zero(ct, ATTR_REPL_COUNTER_BYTES),
                        u64_or_zero(ct, ATTR_REPL_COUNTER_PACKETS)};
    s.start_ns = u64_or_zero(ct, ATTR_TIMESTAMP_START);
    s.stop_ns = u64_or_zero(ct, ATTR_TIMESTAMP_STOP);
    return s;
}

std::optional<core::FlowSample> sample_from_message(const nlmsghdr* nlh, core::SampleKind kind) {
    // A fresh object per message: nfct_nlmsg_parse only sets the attributes it
    // finds, so reusing one would leak timestamps or counters between entries.
    std::unique_ptr<nf_conntrack, CtDeleter> ct(nfct_new());
    if (!ct || nfct_nlmsg_parse(nlh, ct.get()) < 0) {
        return std::nullopt;
    }
    return sample_from_conntrack(ct.get(), kind);
}

}  // namespace ctquota::conntrack
