// The ctnetlink -> FlowSample parser against messages laid out as the kernel
// sends them (nested CTA_* attributes, big-endian values), built here with
// libmnl so every field's expected value is known; against
// libnetfilter_conntrack's reading of the same messages (what the daemon used
// before it parsed with libmnl); and against malformed and truncated ones.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "conntrack/sample_parser.hpp"

using ctquota::conntrack::sample_from_message;
using ctquota::core::SampleKind;

namespace {

struct Tuple {
    int family = AF_INET;
    std::string src = "100.64.1.1";
    std::string dst = "198.18.0.2";
    std::uint8_t proto = IPPROTO_UDP;
    std::uint16_t sport = 4000;
    std::uint16_t dport = 53;
};

struct Message {
    Tuple orig;
    Tuple reply;
    std::uint32_t id = 0x1234abcd;
    std::optional<std::uint16_t> zone;
    std::optional<std::uint32_t> mark;
    bool counters = true;
    bool narrow_counters = false;
    std::uint64_t orig_bytes = 1500, orig_packets = 3, reply_bytes = 90000, reply_packets = 61;
    std::optional<std::uint64_t> start_ns = 1'800'000'000'123'456'789ull;
    std::optional<std::uint64_t> stop_ns;
};

void put_tuple(nlmsghdr* nlh, int type, const Tuple& t) {
    nlattr* tuple = mnl_attr_nest_start(nlh, static_cast<std::uint16_t>(type));
    nlattr* ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
    if (t.family == AF_INET) {
        in_addr a{}, b{};
        inet_pton(AF_INET, t.src.c_str(), &a);
        inet_pton(AF_INET, t.dst.c_str(), &b);
        mnl_attr_put(nlh, CTA_IP_V4_SRC, sizeof a, &a);
        mnl_attr_put(nlh, CTA_IP_V4_DST, sizeof b, &b);
    } else {
        in6_addr a{}, b{};
        inet_pton(AF_INET6, t.src.c_str(), &a);
        inet_pton(AF_INET6, t.dst.c_str(), &b);
        mnl_attr_put(nlh, CTA_IP_V6_SRC, sizeof a, &a);
        mnl_attr_put(nlh, CTA_IP_V6_DST, sizeof b, &b);
    }
    mnl_attr_nest_end(nlh, ip);
    nlattr* proto = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
    mnl_attr_put_u8(nlh, CTA_PROTO_NUM, t.proto);
    if (t.proto == IPPROTO_ICMP) {
        mnl_attr_put_u16(nlh, CTA_PROTO_ICMP_ID, htons(t.sport));
        mnl_attr_put_u8(nlh, CTA_PROTO_ICMP_TYPE, static_cast<std::uint8_t>(t.dport >> 8));
        mnl_attr_put_u8(nlh, CTA_PROTO_ICMP_CODE, static_cast<std::uint8_t>(t.dport & 0xff));
    } else if (t.proto == IPPROTO_ICMPV6) {
        mnl_attr_put_u16(nlh, CTA_PROTO_ICMPV6_ID, htons(t.sport));
        mnl_attr_put_u8(nlh, CTA_PROTO_ICMPV6_TYPE, static_cast<std::uint8_t>(t.dport >> 8));
        mnl_attr_put_u8(nlh, CTA_PROTO_ICMPV6_CODE, static_cast<std::uint8_t>(t.dport & 0xff));
    } else if (t.proto != IPPROTO_GRE) {  // here: a protocol without ports
        mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(t.sport));
        mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(t.dport));
    }
    mnl_attr_nest_end(nlh, proto);
    mnl_attr_nest_end(nlh, tuple);
}

void put_counters(nlmsghdr* nlh, int type, std::uint64_t bytes, std::uint64_t packets,
                  bool narrow = false) {
    nlattr* nest = mnl_attr_nest_start(nlh, static_cast<std::uint16_t>(type));
    if (narrow) {  // the 32-bit counters of old kernels
        mnl_attr_put_u32(nlh, CTA_COUNTERS32_PACKETS, htonl(static_cast<std::uint32_t>(packets)));
        mnl_attr_put_u32(nlh, CTA_COUNTERS32_BYTES, htonl(static_cast<std::uint32_t>(bytes)));
    } else {
        mnl_attr_put_u64(nlh, CTA_COUNTERS_PACKETS, htobe64(packets));
        mnl_attr_put_u64(nlh, CTA_COUNTERS_BYTES, htobe64(bytes));
    }
    mnl_attr_nest_end(nlh, nest);
}

// A DESTROY event as ctnetlink multicasts it.
nlmsghdr* build(std::array<char, 4096>& buf, const Message& m, int family = AF_INET) {
    buf.fill(0);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = static_cast<std::uint8_t>(family);
    nfg->version = NFNETLINK_V0;
    put_tuple(nlh, CTA_TUPLE_ORIG, m.orig);
    put_tuple(nlh, CTA_TUPLE_REPLY, m.reply);
    mnl_attr_put_u32(nlh, CTA_ID, htonl(m.id));
    if (m.zone) {
        mnl_attr_put_u16(nlh, CTA_ZONE, htons(*m.zone));
    }
    if (m.mark) {
        mnl_attr_put_u32(nlh, CTA_MARK, htonl(*m.mark));
    }
    if (m.counters) {
        put_counters(nlh, CTA_COUNTERS_ORIG, m.orig_bytes, m.orig_packets, m.narrow_counters);
        put_counters(nlh, CTA_COUNTERS_REPLY, m.reply_bytes, m.reply_packets, m.narrow_counters);
    }
    if (m.start_ns || m.stop_ns) {
        nlattr* ts = mnl_attr_nest_start(nlh, CTA_TIMESTAMP);
        if (m.start_ns) {
            mnl_attr_put_u64(nlh, CTA_TIMESTAMP_START, htobe64(*m.start_ns));
        }
        if (m.stop_ns) {
            mnl_attr_put_u64(nlh, CTA_TIMESTAMP_STOP, htobe64(*m.stop_ns));
        }
        mnl_attr_nest_end(nlh, ts);
    }
    return nlh;
}

Message nat_udp_v4() {
    Message m;
    m.reply = Tuple{AF_INET, "198.18.0.2", "198.18.0.1", IPPROTO_UDP, 53, 4000};
    return m;
}

}  // namespace

TEST_CASE("parser: IPv4 UDP through SNAT, with counters, timestamp, zone and mark") {
    std::array<char, 4096> buf{};
    Message m = nat_udp_v4();
    m.zone = 7;
    m.mark = 0xfeed;
    const auto s = sample_from_message(build(buf, m), SampleKind::Destroy);
    REQUIRE(s.has_value());
    CHECK(s->kind == SampleKind::Destroy);
    CHECK(s->id == 0x1234abcd);
    CHECK(s->zone == 7);
    CHECK(s->mark == 0xfeed);
    CHECK(s->orig.src.to_string() == "100.64.1.1");
    CHECK(s->orig.dst.to_string() == "198.18.0.2");
    CHECK(s->orig.src_port == 4000);
    CHECK(s->orig.dst_port == 53);
    CHECK(s->orig.l4proto == IPPROTO_UDP);
    CHECK(s->reply.dst.to_string() == "198.18.0.1");  // the NAT address is only in the reply
    CHECK(s->orig_counters == ctquota::core::Counters{1500, 3});
    CHECK(s->reply_counters == ctquota::core::Counters{90000, 61});
    CHECK(s->start_ns == 1'800'000'000'123'456'789ull);
}

TEST_CASE("parser: IPv6 TCP, 64-bit counters past 4 GiB") {
    std::array<char, 4096> buf{};
    Message m;
    m.orig = Tuple{AF_INET6, "2001:db8:0:1::1", "2001:db8:ffff::2", IPPROTO_TCP, 40000, 443};
    m.reply = Tuple{AF_INET6, "2001:db8:ffff::2", "2001:db8:ffff::1", IPPROTO_TCP, 443, 40000};
    m.orig_bytes = 6ull << 30;
    const auto s = sample_from_message(build(buf, m, AF_INET6), SampleKind::Poll);
    REQUIRE(s.has_value());
    CHECK(s->orig.src.to_string() == "2001:db8:0:1::1");
    CHECK(s->orig.l4proto == IPPROTO_TCP);
    CHECK(s->orig.dst_port == 443);
    CHECK(s->orig_counters.bytes == 6ull << 30);
}

TEST_CASE("parser: ICMP keeps id and type/code in the port fields") {
    std::array<char, 4096> buf{};
    Message m = nat_udp_v4();
    m.orig.proto = m.reply.proto = IPPROTO_ICMP;
    m.orig.sport = 777;
    m.orig.dport = (8 << 8) | 0;  // echo request
    const auto s = sample_from_message(build(buf, m), SampleKind::Destroy);
    REQUIRE(s.has_value());
    CHECK(s->orig.src_port == 777);
    CHECK(s->orig.dst_port == (8 << 8));
}

TEST_CASE("parser: accounting or timestamps off give zeros, not garbage") {
    std::array<char, 4096> buf{};
    Message m = nat_udp_v4();
    m.counters = false;
    m.start_ns.reset();
    const auto s = sample_from_message(build(buf, m), SampleKind::Destroy);
    REQUIRE(s.has_value());
    CHECK(s->orig_counters == ctquota::core::Counters{});
    CHECK(s->reply_counters == ctquota::core::Counters{});
    CHECK(s->start_ns == 0);
}

TEST_CASE("parser: a message without tuples is refused") {
    std::array<char, 4096> buf{};
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = AF_INET;
    mnl_attr_put_u32(nlh, CTA_ID, htonl(1));
    CHECK_FALSE(sample_from_message(nlh, SampleKind::Destroy).has_value());
}

TEST_CASE("parser: stop timestamp and the 32-bit counters of old kernels") {
    std::array<char, 4096> buf{};
    Message m = nat_udp_v4();
    m.narrow_counters = true;
    m.stop_ns = 1'800'000'007'000'000'000ull;
    const auto s = sample_from_message(build(buf, m), SampleKind::Destroy);
    REQUIRE(s.has_value());
    CHECK(s->orig_counters == ctquota::core::Counters{1500, 3});
    CHECK(s->reply_counters == ctquota::core::Counters{90000, 61});
    CHECK(s->start_ns == 1'800'000'000'123'456'789ull);
    CHECK(s->stop_ns == 1'800'000'007'000'000'000ull);
}

namespace {

// How the daemon read a message before: through a libnetfilter_conntrack
// object (kept here as the reference the libmnl parser must agree with).
namespace reference {

struct TupleAttrs {
    nf_conntrack_attr src4, dst4, src6, dst6, sport, dport, l4proto;
};
constexpr TupleAttrs kOrig = {ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_SRC,
                              ATTR_ORIG_IPV6_DST, ATTR_ORIG_PORT_SRC, ATTR_ORIG_PORT_DST,
                              ATTR_ORIG_L4PROTO};
constexpr TupleAttrs kReply = {ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_SRC,
                               ATTR_REPL_IPV6_DST, ATTR_REPL_PORT_SRC, ATTR_REPL_PORT_DST,
                               ATTR_REPL_L4PROTO};

std::uint64_t u64_or_zero(const nf_conntrack* ct, nf_conntrack_attr attr) {
    return nfct_attr_is_set(ct, attr) > 0 ? nfct_get_attr_u64(ct, attr) : 0;
}

ctquota::core::FlowTuple tuple(const nf_conntrack* ct, std::uint8_t l3, const TupleAttrs& a) {
    using ctquota::core::IpAddress;
    ctquota::core::FlowTuple t;
    t.src = l3 == AF_INET ? IpAddress::v4_bytes(nfct_get_attr(ct, a.src4))
                          : IpAddress::v6_bytes(nfct_get_attr(ct, a.src6));
    t.dst = l3 == AF_INET ? IpAddress::v4_bytes(nfct_get_attr(ct, a.dst4))
                          : IpAddress::v6_bytes(nfct_get_attr(ct, a.dst6));
    t.l4proto = nfct_get_attr_u8(ct, a.l4proto);
    if (t.l4proto == IPPROTO_ICMP || t.l4proto == IPPROTO_ICMPV6) {
        t.src_port = ntohs(nfct_get_attr_u16(ct, ATTR_ICMP_ID));
        t.dst_port = static_cast<std::uint16_t>((nfct_get_attr_u8(ct, ATTR_ICMP_TYPE) << 8) |
                                                nfct_get_attr_u8(ct, ATTR_ICMP_CODE));
    } else if (nfct_attr_is_set(ct, a.sport) > 0) {
        t.src_port = ntohs(nfct_get_attr_u16(ct, a.sport));
        t.dst_port = ntohs(nfct_get_attr_u16(ct, a.dport));
    }
    return t;
}

std::optional<ctquota::core::FlowSample> sample(const nlmsghdr* nlh, SampleKind kind) {
    std::unique_ptr<nf_conntrack, decltype(&nfct_destroy)> owner(nfct_new(), nfct_destroy);
    nf_conntrack* ct = owner.get();
    if (ct == nullptr || nfct_nlmsg_parse(nlh, ct) < 0 ||
        nfct_attr_is_set(ct, ATTR_ORIG_L3PROTO) <= 0 ||
        nfct_attr_is_set(ct, ATTR_REPL_L3PROTO) <= 0) {
        return std::nullopt;
    }
    const std::uint8_t l3 = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
    if (l3 != AF_INET && l3 != AF_INET6) {
        return std::nullopt;
    }
    ctquota::core::FlowSample s;
    s.kind = kind;
    s.id = nfct_attr_is_set(ct, ATTR_ID) > 0 ? nfct_get_attr_u32(ct, ATTR_ID) : 0;
    s.zone = nfct_attr_is_set(ct, ATTR_ZONE) > 0 ? nfct_get_attr_u16(ct, ATTR_ZONE) : 0;
    s.mark = nfct_attr_is_set(ct, ATTR_MARK) > 0 ? nfct_get_attr_u32(ct, ATTR_MARK) : 0;
    s.orig = tuple(ct, l3, kOrig);
    s.reply = tuple(ct, l3, kReply);
    s.orig_counters = {u64_or_zero(ct, ATTR_ORIG_COUNTER_BYTES),
                       u64_or_zero(ct, ATTR_ORIG_COUNTER_PACKETS)};
    s.reply_counters = {u64_or_zero(ct, ATTR_REPL_COUNTER_BYTES),
                        u64_or_zero(ct, ATTR_REPL_COUNTER_PACKETS)};
    s.start_ns = u64_or_zero(ct, ATTR_TIMESTAMP_START);
    s.stop_ns = u64_or_zero(ct, ATTR_TIMESTAMP_STOP);
    return s;
}

}  // namespace reference

std::string random_address(std::mt19937_64& rng, int family) {
    std::array<unsigned char, 16> raw{};
    for (auto& b : raw) {
        b = static_cast<unsigned char>(rng());
    }
    std::array<char, INET6_ADDRSTRLEN> text{};
    inet_ntop(family, raw.data(), text.data(), text.size());
    return text.data();
}

Tuple random_tuple(std::mt19937_64& rng, int family, std::uint8_t proto) {
    return Tuple{family, random_address(rng, family),       random_address(rng, family),
                 proto,  static_cast<std::uint16_t>(rng()), static_cast<std::uint16_t>(rng())};
}

// Any field present or not, any value; counters 32-bit only below 2^32.
Message random_message(std::mt19937_64& rng, int family) {
    constexpr std::array<std::uint8_t, 5> kProtos = {IPPROTO_UDP, IPPROTO_TCP, IPPROTO_ICMP,
                                                     IPPROTO_ICMPV6, IPPROTO_GRE};
    const std::uint8_t proto = kProtos[rng() % kProtos.size()];
    Message m;
    m.orig = random_tuple(rng, family, proto);
    m.reply = random_tuple(rng, family, proto);
    m.id = static_cast<std::uint32_t>(rng());
    const auto coin = [&rng] { return (rng() & 1) != 0; };
    if (coin()) {
        m.zone = static_cast<std::uint16_t>(rng());
    }
    if (coin()) {
        m.mark = static_cast<std::uint32_t>(rng());
    }
    m.counters = coin();
    m.narrow_counters = coin();
    const std::uint64_t range = m.narrow_counters ? (1ull << 32) : ~0ull;
    m.orig_bytes = rng() % range;
    m.orig_packets = rng() % range;
    m.reply_bytes = rng() % range;
    m.reply_packets = rng() % range;
    m.start_ns = coin() ? std::optional<std::uint64_t>(rng()) : std::nullopt;
    m.stop_ns = coin() ? std::optional<std::uint64_t>(rng()) : std::nullopt;
    return m;
}

void check_same(const ctquota::core::FlowSample& a, const ctquota::core::FlowSample& b) {
    CHECK(a.kind == b.kind);
    CHECK(a.id == b.id);
    CHECK(a.zone == b.zone);
    CHECK(a.mark == b.mark);
    CHECK(a.orig == b.orig);
    CHECK(a.reply == b.reply);
    CHECK(a.orig_counters == b.orig_counters);
    CHECK(a.reply_counters == b.reply_counters);
    CHECK(a.start_ns == b.start_ns);
    CHECK(a.stop_ns == b.stop_ns);
}

// The lengths at which a message holds only whole top-level attributes: each
// attribute's start, and its end with or without its alignment padding.
std::vector<std::uint32_t> whole_lengths(const nlmsghdr* nlh) {
    std::vector<std::uint32_t> lengths;
    auto at = static_cast<std::uint32_t>(mnl_nlmsg_size(sizeof(nfgenmsg)));
    while (at < nlh->nlmsg_len) {
        lengths.push_back(at);
        const auto* a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(nlh) + at);
        for (std::uint32_t end = at + a->nla_len; end < at + MNL_ALIGN(a->nla_len); ++end) {
            lengths.push_back(end);
        }
        at += MNL_ALIGN(a->nla_len);
    }
    lengths.push_back(nlh->nlmsg_len);
    return lengths;
}

}  // namespace

TEST_CASE("parser: field for field what libnetfilter_conntrack read, over random messages") {
    std::mt19937_64 rng(15);
    std::array<char, 4096> buf{};
    for (int i = 0; i < 2000; ++i) {
        const int family = (i % 2 == 0) ? AF_INET : AF_INET6;
        const Message m = random_message(rng, family);
        const nlmsghdr* nlh = build(buf, m, family);
        const auto kind = (i % 3 == 0) ? SampleKind::Poll : SampleKind::Destroy;
        const auto ours = sample_from_message(nlh, kind);
        const auto theirs = reference::sample(nlh, kind);
        REQUIRE(ours.has_value());
        REQUIRE(theirs.has_value());
        check_same(*ours, *theirs);
        CHECK(ours->id == m.id);  // and both are right, not merely alike
        CHECK(ours->zone == m.zone.value_or(0));
        CHECK(ours->stop_ns == m.stop_ns.value_or(0));
    }
}

TEST_CASE("parser: a message cut inside an attribute is refused, never half read") {
    std::array<char, 4096> buf{};
    Message m = nat_udp_v4();
    m.zone = 3;
    m.stop_ns = 42;
    nlmsghdr* nlh = build(buf, m);
    const std::uint32_t full = nlh->nlmsg_len;
    const auto whole = whole_lengths(nlh);
    for (std::uint32_t len = 0; len < full; ++len) {
        CAPTURE(len);
        nlh->nlmsg_len = len;
        const auto s = sample_from_message(nlh, SampleKind::Destroy);
        if (std::find(whole.begin(), whole.end(), len) == whole.end()) {
            CHECK_FALSE(s.has_value());
        } else if (s.has_value()) {
            CHECK(s->orig.src.to_string() == "100.64.1.1");  // the tuples came whole
            CHECK(s->reply.dst.to_string() == "198.18.0.1");
        }
    }
    nlh->nlmsg_len = full;
    CHECK(sample_from_message(nlh, SampleKind::Destroy).has_value());
}

TEST_CASE("parser: malformed attributes are refused") {
    struct Row {
        const char* what;
        void (*put)(nlmsghdr*);
    };
    const std::array<Row, 7> rows = {{
        {"an id of two bytes", [](nlmsghdr* n) { mnl_attr_put_u16(n, CTA_ID, 1); }},
        {"a zone of four bytes", [](nlmsghdr* n) { mnl_attr_put_u32(n, CTA_ZONE, 1); }},
        {"a mark of one byte", [](nlmsghdr* n) { mnl_attr_put_u8(n, CTA_MARK, 1); }},
        {"a 64-bit counter of four bytes",
         [](nlmsghdr* n) {
             nlattr* c = mnl_attr_nest_start(n, CTA_COUNTERS_ORIG);
             mnl_attr_put_u32(n, CTA_COUNTERS_BYTES, 1);
             mnl_attr_nest_end(n, c);
         }},
        {"a timestamp that is not a nest",
         [](nlmsghdr* n) { mnl_attr_put_u16(n, CTA_TIMESTAMP, 1); }},
        {"an IPv4 address of six bytes",
         [](nlmsghdr* n) {
             nlattr* t = mnl_attr_nest_start(n, CTA_TUPLE_ORIG);
             nlattr* ip = mnl_attr_nest_start(n, CTA_TUPLE_IP);
             const std::array<char, 6> six{};
             mnl_attr_put(n, CTA_IP_V4_SRC, six.size(), six.data());
             mnl_attr_nest_end(n, ip);
             mnl_attr_nest_end(n, t);
         }},
        {"a port of one byte",
         [](nlmsghdr* n) {
             nlattr* t = mnl_attr_nest_start(n, CTA_TUPLE_REPLY);
             nlattr* p = mnl_attr_nest_start(n, CTA_TUPLE_PROTO);
             mnl_attr_put_u8(n, CTA_PROTO_SRC_PORT, 1);
             mnl_attr_nest_end(n, p);
             mnl_attr_nest_end(n, t);
         }},
    }};
    for (const auto& row : rows) {
        CAPTURE(row.what);
        std::array<char, 4096> buf{};
        nlmsghdr* nlh = build(buf, nat_udp_v4());
        REQUIRE(sample_from_message(nlh, SampleKind::Destroy).has_value());
        row.put(nlh);
        CHECK_FALSE(sample_from_message(nlh, SampleKind::Destroy).has_value());
    }
}

TEST_CASE("parser: a family other than IPv4/IPv6 or a header cut short is refused") {
    std::array<char, 4096> buf{};
    nlmsghdr* nlh = build(buf, nat_udp_v4(), AF_BRIDGE);
    CHECK_FALSE(sample_from_message(nlh, SampleKind::Destroy).has_value());
    nlh = build(buf, nat_udp_v4());
    nlh->nlmsg_len = sizeof(nlmsghdr) + 2;
    CHECK_FALSE(sample_from_message(nlh, SampleKind::Destroy).has_value());
}
