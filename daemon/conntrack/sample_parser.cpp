#include "conntrack/sample_parser.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>

#include <array>
#include <cstring>

// The attributes are read with libmnl straight into the sample: building a
// libnetfilter_conntrack object per message (allocation, a table of
// attribute setters, then a getter call per field) cost about a sixth of the
// daemon's CPU per short flow. The values are those the object-based parser
// gave, field for field (tests/unit/sample_parser_test.cpp holds the two side
// by side); a malformed message (an attribute of the wrong size, a nest that
// does not parse) is refused as a whole rather than half read.

namespace ctquota::conntrack {
namespace {

// One tuple as the kernel nests it; absent attributes stay zero.
struct RawTuple {
    bool present = false;
    std::array<std::uint8_t, 16> src{};
    std::array<std::uint8_t, 16> dst{};
    std::uint8_t l4proto = 0;
    bool has_ports = false;
    std::uint16_t sport_be = 0;
    std::uint16_t dport_be = 0;
    std::uint16_t icmp_id_be = 0;
    std::uint8_t icmp_type = 0;
    std::uint8_t icmp_code = 0;
};

bool valid(const nlattr* a, mnl_attr_data_type type) {
    return mnl_attr_validate(a, type) >= 0;
}

// Calls read(attr) for each attribute of [begin, end): false when one is
// malformed or the last one runs past the end (a truncated message).
template <typename Read>
bool each_attr(const void* begin, const void* end, Read&& read) {
    const auto* p = static_cast<const char*>(begin);
    const auto* stop = static_cast<const char*>(end);
    while (p < stop) {
        const auto* a = reinterpret_cast<const nlattr*>(p);
        if (!mnl_attr_ok(a, static_cast<int>(stop - p)) || !read(a)) {
            return false;
        }
        p += MNL_ALIGN(a->nla_len);
    }
    return true;
}

template <typename Read>
bool each_nested(const nlattr* nest, Read&& read) {
    return valid(nest, MNL_TYPE_NESTED) &&
           each_attr(mnl_attr_get_payload(nest),
                     static_cast<const char*>(static_cast<const void*>(nest)) + nest->nla_len,
                     read);
}

bool read_u8(const nlattr* a, std::uint8_t& out) {
    if (!valid(a, MNL_TYPE_U8)) {
        return false;
    }
    out = mnl_attr_get_u8(a);
    return true;
}

// A 16-bit value as it stands in the message (network order).
bool read_u16(const nlattr* a, std::uint16_t& out) {
    if (!valid(a, MNL_TYPE_U16)) {
        return false;
    }
    out = mnl_attr_get_u16(a);
    return true;
}

bool read_be32(const nlattr* a, std::uint32_t& out) {
    if (!valid(a, MNL_TYPE_U32)) {
        return false;
    }
    out = ntohl(mnl_attr_get_u32(a));
    return true;
}

bool read_be64(const nlattr* a, std::uint64_t& out) {
    if (!valid(a, MNL_TYPE_U64)) {
        return false;
    }
    out = be64toh(mnl_attr_get_u64(a));
    return true;
}

// An address attribute of exactly `len` bytes, copied to `out`.
bool read_address(const nlattr* a, std::size_t len, std::array<std::uint8_t, 16>& out) {
    if (mnl_attr_get_payload_len(a) != len) {
        return false;
    }
    std::memcpy(out.data(), mnl_attr_get_payload(a), len);
    return true;
}

bool parse_ip(const nlattr* nest, RawTuple& t) {
    return each_nested(nest, [&t](const nlattr* a) {
        switch (mnl_attr_get_type(a)) {
            case CTA_IP_V4_SRC:
                return read_address(a, 4, t.src);
            case CTA_IP_V4_DST:
                return read_address(a, 4, t.dst);
            case CTA_IP_V6_SRC:
                return read_address(a, 16, t.src);
            case CTA_IP_V6_DST:
                return read_address(a, 16, t.dst);
            default:
                return true;
        }
    });
}

bool parse_proto(const nlattr* nest, RawTuple& t) {
    return each_nested(nest, [&t](const nlattr* a) {
        switch (mnl_attr_get_type(a)) {
            case CTA_PROTO_NUM:
                return read_u8(a, t.l4proto);
            case CTA_PROTO_SRC_PORT:
                t.has_ports = true;
                return read_u16(a, t.sport_be);
            case CTA_PROTO_DST_PORT:
                return read_u16(a, t.dport_be);
            case CTA_PROTO_ICMP_ID:
            case CTA_PROTO_ICMPV6_ID:
                return read_u16(a, t.icmp_id_be);
            case CTA_PROTO_ICMP_TYPE:
            case CTA_PROTO_ICMPV6_TYPE:
                return read_u8(a, t.icmp_type);
            case CTA_PROTO_ICMP_CODE:
            case CTA_PROTO_ICMPV6_CODE:
                return read_u8(a, t.icmp_code);
            default:
                return true;
        }
    });
}

bool parse_tuple(const nlattr* nest, RawTuple& t) {
    t.present = true;
    return each_nested(nest, [&t](const nlattr* a) {
        switch (mnl_attr_get_type(a)) {
            case CTA_TUPLE_IP:
                return parse_ip(a, t);
            case CTA_TUPLE_PROTO:
                return parse_proto(a, t);
            default:
                return true;
        }
    });
}

// CTA_COUNTERS_*: 64-bit counters, or the 32-bit ones of old kernels.
bool parse_counters(const nlattr* nest, core::Counters& c) {
    return each_nested(nest, [&c](const nlattr* a) {
        std::uint32_t v32 = 0;
        bool ok = true;
        switch (mnl_attr_get_type(a)) {
            case CTA_COUNTERS_PACKETS:
                return read_be64(a, c.packets);
            case CTA_COUNTERS_BYTES:
                return read_be64(a, c.bytes);
            case CTA_COUNTERS32_PACKETS:
                ok = read_be32(a, v32);
                c.packets = v32;
                return ok;
            case CTA_COUNTERS32_BYTES:
                ok = read_be32(a, v32);
                c.bytes = v32;
                return ok;
            default:
                return true;
        }
    });
}

bool parse_timestamp(const nlattr* nest, core::FlowSample& s) {
    return each_nested(nest, [&s](const nlattr* a) {
        switch (mnl_attr_get_type(a)) {
            case CTA_TIMESTAMP_START:
                return read_be64(a, s.start_ns);
            case CTA_TIMESTAMP_STOP:
                return read_be64(a, s.stop_ns);
            default:
                return true;
        }
    });
}

// One top-level attribute into the sample (or the raw tuples); false when malformed.
bool parse_top(const nlattr* a, core::FlowSample& s, RawTuple& orig, RawTuple& reply) {
    switch (mnl_attr_get_type(a)) {
        case CTA_TUPLE_ORIG:
            return parse_tuple(a, orig);
        case CTA_TUPLE_REPLY:
            return parse_tuple(a, reply);
        case CTA_ID:
            return read_be32(a, s.id);
        case CTA_MARK:
            return read_be32(a, s.mark);
        case CTA_ZONE:
            if (!read_u16(a, s.zone)) {
                return false;
            }
            s.zone = ntohs(s.zone);
            return true;
        case CTA_COUNTERS_ORIG:
            return parse_counters(a, s.orig_counters);
        case CTA_COUNTERS_REPLY:
            return parse_counters(a, s.reply_counters);
        case CTA_TIMESTAMP:
            return parse_timestamp(a, s);
        default:
            return true;
    }
}

core::IpAddress address(std::uint8_t l3, const std::array<std::uint8_t, 16>& raw) {
    return l3 == AF_INET ? core::IpAddress::v4_bytes(raw.data())
                         : core::IpAddress::v6_bytes(raw.data());
}

// ICMP's id and type/code sit in the port fields; the reply tuple carries
// the original direction's, as the object-based parser reported them.
core::FlowTuple to_tuple(std::uint8_t l3, const RawTuple& t, const RawTuple& icmp_source) {
    core::FlowTuple out;
    out.src = address(l3, t.src);
    out.dst = address(l3, t.dst);
    out.l4proto = t.l4proto;
    if (t.l4proto == IPPROTO_ICMP || t.l4proto == IPPROTO_ICMPV6) {
        out.src_port = ntohs(icmp_source.icmp_id_be);
        out.dst_port =
            static_cast<std::uint16_t>((icmp_source.icmp_type << 8) | icmp_source.icmp_code);
    } else if (t.has_ports) {
        out.src_port = ntohs(t.sport_be);
        out.dst_port = ntohs(t.dport_be);
    }
    return out;
}

}  // namespace

std::optional<core::FlowSample> sample_from_message(const nlmsghdr* nlh, core::SampleKind kind) {
    if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nfgenmsg))) {
        return std::nullopt;
    }
    const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    const std::uint8_t l3 = nfg->nfgen_family;
    if (l3 != AF_INET && l3 != AF_INET6) {
        return std::nullopt;
    }
    core::FlowSample s;
    s.kind = kind;
    RawTuple orig;
    RawTuple reply;
    // The end is nlmsg_len itself, not libmnl's tail rounded up to the
    // alignment: the bytes past it may belong to nothing.
    const auto* end = reinterpret_cast<const char*>(nlh) + nlh->nlmsg_len;
    const bool ok = each_attr(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)), end,
                              [&](const nlattr* a) { return parse_top(a, s, orig, reply); });
    if (!ok || !orig.present || !reply.present) {
        return std::nullopt;
    }
    s.orig = to_tuple(l3, orig, orig);
    s.reply = to_tuple(l3, reply, orig);
    return s;
}

}  // namespace ctquota::conntrack
