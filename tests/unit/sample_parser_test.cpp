// The ctnetlink -> FlowSample parser against messages laid out as the kernel
// sends them (nested CTA_* attributes, big-endian values), built here with
// libmnl so every field's expected value is known.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>

#include <array>
#include <cstring>
#include <optional>

#include "conntrack/sample_parser.hpp"

using ctquota::conntrack::sample_from_message;
using ctquota::core::SampleKind;

namespace {

struct Tuple {
    int family = AF_INET;
    const char* src = "100.64.1.1";
    const char* dst = "198.18.0.2";
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
    std::uint64_t orig_bytes = 1500, orig_packets = 3, reply_bytes = 90000, reply_packets = 61;
    std::optional<std::uint64_t> start_ns = 1'800'000'000'123'456'789ull;
};

void put_tuple(nlmsghdr* nlh, int type, const Tuple& t) {
    nlattr* tuple = mnl_attr_nest_start(nlh, static_cast<std::uint16_t>(type));
    nlattr* ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
    if (t.family == AF_INET) {
        in_addr a{}, b{};
        inet_pton(AF_INET, t.src, &a);
        inet_pton(AF_INET, t.dst, &b);
        mnl_attr_put(nlh, CTA_IP_V4_SRC, sizeof a, &a);
        mnl_attr_put(nlh, CTA_IP_V4_DST, sizeof b, &b);
    } else {
        in6_addr a{}, b{};
        inet_pton(AF_INET6, t.src, &a);
        inet_pton(AF_INET6, t.dst, &b);
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
    } else {
        mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(t.sport));
        mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(t.dport));
    }
    mnl_attr_nest_end(nlh, proto);
    mnl_attr_nest_end(nlh, tuple);
}

void put_counters(nlmsghdr* nlh, int type, std::uint64_t bytes, std::uint64_t packets) {
    nlattr* nest = mnl_attr_nest_start(nlh, static_cast<std::uint16_t>(type));
    mnl_attr_put_u64(nlh, CTA_COUNTERS_PACKETS, htobe64(packets));
    mnl_attr_put_u64(nlh, CTA_COUNTERS_BYTES, htobe64(bytes));
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
        put_counters(nlh, CTA_COUNTERS_ORIG, m.orig_bytes, m.orig_packets);
        put_counters(nlh, CTA_COUNTERS_REPLY, m.reply_bytes, m.reply_packets);
    }
    if (m.start_ns) {
        nlattr* ts = mnl_attr_nest_start(nlh, CTA_TIMESTAMP);
        mnl_attr_put_u64(nlh, CTA_TIMESTAMP_START, htobe64(*m.start_ns));
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
