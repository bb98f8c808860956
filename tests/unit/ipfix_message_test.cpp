// IPFIX message building (sinks/ipfix_message): the bytes of templates and
// records checked against hand-assembled RFC 7011 encodings, a decoder
// walking every message a session makes, sequence numbers, and when the
// templates go out again.
#include <doctest/doctest.h>

#include <map>

#include "sinks/ipfix_message.hpp"
#include "test_helpers.hpp"

using namespace ctquota;
using namespace ctquota::sinks;
using namespace ctquota::test;
using namespace std::chrono;
using Bytes = std::vector<std::uint8_t>;

namespace {

const core::TimePoint kNow{sys_days{2026y / 11 / 26} + 8h};
constexpr std::uint32_t kNowSeconds = 1795680000;  // 2026-11-26T08:00:00Z

// 100.64.1.1:40000 -> 198.18.0.2:53 UDP, SNAT to 198.18.0.1:61000; ended.
core::FlowRecord udp_v4() {
    core::FlowRecord r;
    r.kind = core::RecordKind::Final;
    r.orig = {ip("100.64.1.1"), ip("198.18.0.2"), 40000, 53, 17};
    r.reply = {ip("198.18.0.2"), ip("198.18.0.1"), 53, 61000, 17};
    r.orig_delta = r.orig_total = {300, 3};
    r.reply_delta = r.reply_total = {900, 2};
    r.start_ns = 1'700'000'000'123'456'789;
    r.end_ns = 1'700'000'000'456'999'999;
    r.flow_id = 0x0102030405060708;
    r.subscriber = 7;
    r.direction = core::Direction::OrigIsUpload;
    return r;
}

core::FlowRecord tcp_v6() {
    core::FlowRecord r;
    r.kind = core::RecordKind::Interim;
    r.orig = {ip("2001:db8:0:1::1"), ip("2001:db8:ffff::2"), 50000, 443, 6};
    r.reply = {ip("2001:db8:ffff::2"), ip("2001:db8:ffff::1"), 443, 50001, 6};
    r.orig_delta = {1000, 10};
    r.reply_delta = {0, 0};
    r.start_ns = 1'700'000'000'000'000'000;
    r.end_ns = 1'700'000'060'000'000'000;
    r.flow_id = 99;
    return r;
}

void u16(Bytes& b, std::uint16_t v) {
    b.push_back(static_cast<std::uint8_t>(v >> 8));
    b.push_back(static_cast<std::uint8_t>(v));
}
void u32(Bytes& b, std::uint32_t v) {
    u16(b, static_cast<std::uint16_t>(v >> 16));
    u16(b, static_cast<std::uint16_t>(v));
}
void u64(Bytes& b, std::uint64_t v) {
    u32(b, static_cast<std::uint32_t>(v >> 32));
    u32(b, static_cast<std::uint32_t>(v));
}
void raw(Bytes& b, std::initializer_list<std::uint8_t> v) {
    b.insert(b.end(), v);
}
std::uint16_t get16(const Bytes& b, std::size_t at) {
    return static_cast<std::uint16_t>(b.at(at) << 8 | b.at(at + 1));
}
std::uint32_t get32(const Bytes& b, std::size_t at) {
    return static_cast<std::uint32_t>(get16(b, at)) << 16 | get16(b, at + 2);
}

// A minimal collector: walks a message, learns templates, decodes data
// records into {ie (| enterprise << 16): raw value bytes}.
struct Decoded {
    std::uint32_t sequence = 0, domain = 0, export_time = 0;
    std::vector<std::uint16_t> template_ids;  // templates in this message
    std::vector<std::pair<std::uint16_t, std::map<std::uint64_t, Bytes>>> records;
};

struct Collector {
    std::map<std::uint16_t, std::vector<std::tuple<std::uint16_t, std::uint16_t, std::uint32_t>>>
        templates;

    Decoded decode(const Bytes& m) {
        Decoded d;
        REQUIRE(m.size() >= 16);
        CHECK(get16(m, 0) == 10);
        CHECK(get16(m, 2) == m.size());
        d.export_time = get32(m, 4);
        d.sequence = get32(m, 8);
        d.domain = get32(m, 12);
        std::size_t at = 16;
        while (at < m.size()) {
            const auto set_id = get16(m, at);
            const auto len = get16(m, at + 2);
            REQUIRE(len >= 4);
            REQUIRE(at + len <= m.size());
            const auto end = at + len;
            at += 4;
            if (set_id == 2) {
                while (at + 4 <= end) {
                    const auto id = get16(m, at);
                    const auto count = get16(m, at + 2);
                    at += 4;
                    auto& fields = templates[id];
                    fields.clear();
                    for (int i = 0; i < count; ++i) {
                        auto ie = get16(m, at);
                        const auto flen = get16(m, at + 2);
                        std::uint32_t pen = 0;
                        at += 4;
                        if (ie & 0x8000) {
                            pen = get32(m, at);
                            ie &= 0x7fff;
                            at += 4;
                        }
                        fields.emplace_back(ie, flen, pen);
                    }
                    d.template_ids.push_back(id);
                }
            } else {
                REQUIRE(set_id >= 256);
                REQUIRE(templates.contains(set_id));
                const auto& fields = templates[set_id];
                while (at < end) {
                    std::map<std::uint64_t, Bytes> rec;
                    for (const auto& [ie, flen, pen] : fields) {
                        REQUIRE(at + flen <= end);
                        rec[ie | static_cast<std::uint64_t>(pen) << 16] =
                            Bytes(m.begin() + static_cast<long>(at),
                                  m.begin() + static_cast<long>(at + flen));
                        at += flen;
                    }
                    d.records.emplace_back(set_id, std::move(rec));
                }
            }
            CHECK(at == end);
        }
        return d;
    }
};

Bytes address_bytes(const std::string& text) {
    const auto a = ip(text);
    return Bytes(a.bytes.begin(), a.bytes.end());
}

std::uint64_t number(const Bytes& b) {
    std::uint64_t v = 0;
    for (const auto x : b) {
        v = v << 8 | x;
    }
    return v;
}

std::vector<const core::FlowRecord*> ptrs(const std::vector<core::FlowRecord>& rs) {
    std::vector<const core::FlowRecord*> out;
    for (const auto& r : rs) {
        out.push_back(&r);
    }
    return out;
}

}  // namespace

TEST_CASE("the IPv4 biflow template, field by field (IANA numbers, RFC 5103 reverse PEN)") {
    const auto set = ipfix::template_set(ipfix::Layout::Biflow);
    Bytes want;
    u16(want, 2);
    u16(want, static_cast<std::uint16_t>(set.size()));
    u16(want, 256);
    u16(want, 18);
    for (const auto& [ie, len] :
         std::initializer_list<std::pair<std::uint16_t, std::uint16_t>>{{8, 4},
                                                                        {12, 4},
                                                                        {7, 2},
                                                                        {11, 2},
                                                                        {4, 1},
                                                                        {225, 4},
                                                                        {226, 4},
                                                                        {227, 2},
                                                                        {228, 2},
                                                                        {152, 8},
                                                                        {153, 8},
                                                                        {1, 8},
                                                                        {2, 8}}) {
        u16(want, ie);
        u16(want, len);
    }
    raw(want, {0x80, 0x01, 0x00, 0x08, 0x00, 0x00, 0x72, 0x79});  // reverse octetDeltaCount
    raw(want, {0x80, 0x02, 0x00, 0x08, 0x00, 0x00, 0x72, 0x79});  // reverse packetDeltaCount
    raw(want, {0x00, 0x88, 0x00, 0x01, 0x00, 0xef, 0x00, 0x01, 0x00, 0x94, 0x00, 0x08});
    REQUIRE(set.size() > want.size());
    CHECK(Bytes(set.begin(), set.begin() + static_cast<long>(want.size())) == want);
    // 257: the same + natEvent (230, 1 byte); 258: IPv6 (27/28, 281/282).
    Collector c;
    Bytes message(16, 0);
    message[1] = 10;
    message.insert(message.end(), set.begin(), set.end());
    message[2] = static_cast<std::uint8_t>(message.size() >> 8);
    message[3] = static_cast<std::uint8_t>(message.size());
    const auto d = c.decode(message);
    CHECK(d.template_ids == std::vector<std::uint16_t>{256, 257, 258});
    CHECK(std::get<0>(c.templates[257].back()) == 230);
    CHECK(std::get<0>(c.templates[258][0]) == 27);
    CHECK(std::get<1>(c.templates[258][0]) == 16);
    CHECK(std::get<0>(c.templates[258][5]) == 281);
    CHECK(std::get<0>(c.templates[258][6]) == 282);
}

TEST_CASE("a NAT44 record's bytes: pre- and post-NAT tuples, times, 64-bit counts, natEvent") {
    ipfix::MessageBuilder b(ipfix::Layout::Biflow, 42, 1400);
    b.begin(kNowSeconds, 1000, false);
    const auto r = udp_v4();
    REQUIRE(b.add(r));
    const auto m = b.finish();

    Bytes want;
    u16(want, 10);
    u16(want, 16 + 4 + 84);
    u32(want, kNowSeconds);
    u32(want, 1000);  // sequence
    u32(want, 42);    // observation domain
    u16(want, 257);   // NAT44 biflow template
    u16(want, 4 + 84);
    raw(want, {100, 64, 1, 1, 198, 18, 0, 2, 0x9c, 0x40, 0x00, 0x35, 17});
    raw(want, {198, 18, 0, 1, 198, 18, 0, 2, 0xee, 0x48, 0x00, 0x35});
    u64(want, 0x18bcfe5687b);  // 1700000000123 ms: the ns truncated
    u64(want, 0x18bcfe569c8);  // 1700000000456 ms
    u64(want, 300);
    u64(want, 3);
    u64(want, 900);
    u64(want, 2);
    raw(want, {1, 1});  // flowEndReason idle timeout (UDP), biflowDirection initiator
    u64(want, 0x0102030405060708);
    raw(want, {5});  // natEvent: NAT44 session delete
    CHECK(m == want);
    CHECK(ipfix::record_bytes(ipfix::TemplateId::BiflowV4Nat) == 84);
}

TEST_CASE("which template a record takes") {
    Collector c;
    ipfix::Session s({ipfix::Layout::Biflow, 1, 1400, 60s, 100, true});
    auto plain = udp_v4();
    plain.reply = {plain.orig.dst, plain.orig.src, 53, 40000, 17};  // not translated
    auto interim = udp_v4();
    interim.kind = core::RecordKind::Interim;
    const std::vector<core::FlowRecord> rs = {udp_v4(), plain, interim, tcp_v6()};
    const auto msgs = s.encode(ptrs(rs), kNow);
    REQUIRE(msgs.size() == 1);
    const auto d = c.decode(msgs[0]);
    REQUIRE(d.records.size() == 4);
    CHECK(d.records[0].first == 257);  // NAT44 at its end: natEvent
    CHECK(d.records[1].first == 256);  // nothing translated: no NAT event
    CHECK(d.records[2].first == 256);  // interim: no event claimed
    CHECK(d.records[3].first == 258);
    const auto& v6 = d.records[3].second;
    CHECK(v6.at(27) == address_bytes("2001:db8:0:1::1"));
    CHECK(v6.at(281) == address_bytes("2001:db8:ffff::1"));
    CHECK(number(v6.at(227)) == 50001);
    CHECK(number(v6.at(228)) == 443);
    CHECK(number(v6.at(136)) == 2);  // active timeout: an interim record
    CHECK(number(v6.at(1)) == 1000);
    CHECK(number(v6.at(1 | std::uint64_t{ipfix::kReversePen} << 16)) == 0);
    CHECK(number(v6.at(153)) == 1'700'000'060'000);
}

TEST_CASE("per-direction layout: the reply direction is its own record, left out when empty") {
    Collector c;
    ipfix::Session s({ipfix::Layout::PerDirection, 1, 1400, 60s, 100, true});
    const std::vector<core::FlowRecord> rs = {udp_v4(), tcp_v6()};
    const auto msgs = s.encode(ptrs(rs), kNow);
    REQUIRE(msgs.size() == 1);
    const auto d = c.decode(msgs[0]);
    CHECK(d.template_ids == std::vector<std::uint16_t>{259, 260, 261});
    REQUIRE(d.records.size() == 3);  // v4 both ways; v6 reply saw no packet
    CHECK(d.records[0].first == 260);
    const auto& reply = d.records[1].second;
    CHECK(d.records[1].first == 259);
    CHECK(number(reply.at(8)) == 0xc6120002);    // 198.18.0.2: the server answering
    CHECK(number(reply.at(12)) == 0xc6120001);   // to the NAT address
    CHECK(number(reply.at(226)) == 0x64400101);  // after NAT: to the subscriber
    CHECK(number(reply.at(228)) == 40000);
    CHECK(number(reply.at(1)) == 900);
    CHECK(number(reply.at(2)) == 2);
    CHECK_FALSE(reply.contains(1 | std::uint64_t{ipfix::kReversePen} << 16));
    CHECK(s.sequence() == 3);
}

TEST_CASE("sessions: sequence numbers count data records, messages stay under the size") {
    Collector c;
    ipfix::Session s({ipfix::Layout::Biflow, 7, 1400, 60s, 1000, true});
    std::vector<core::FlowRecord> rs(100, udp_v4());
    std::uint32_t expected_seq = 0;
    std::size_t records = 0;
    for (const auto& m : s.encode(ptrs(rs), kNow)) {
        CHECK(m.size() <= 1400);
        const auto d = c.decode(m);
        CHECK(d.sequence == expected_seq);
        CHECK(d.domain == 7);
        CHECK(d.export_time == kNowSeconds);
        expected_seq += static_cast<std::uint32_t>(d.records.size());
        records += d.records.size();
    }
    CHECK(records == 100);
    CHECK(s.sequence() == 100);
    CHECK(s.template_messages() == 1);
}

TEST_CASE("templates: first message, then after the refresh time or N messages (UDP only)") {
    const std::vector<core::FlowRecord> one = {udp_v4()};
    auto has_templates = [](const Bytes& m) { return get16(m, 16) == 2; };

    ipfix::Session udp({ipfix::Layout::Biflow, 1, 1400, 10s, 3, true});
    CHECK(has_templates(udp.encode(ptrs(one), kNow).at(0)));
    CHECK_FALSE(has_templates(udp.encode(ptrs(one), kNow + 1s).at(0)));
    CHECK(udp.encode({}, kNow + 2s).empty());  // nothing due, nothing to say
    CHECK_FALSE(has_templates(udp.encode(ptrs(one), kNow + 3s).at(0)));
    CHECK(has_templates(udp.encode(ptrs(one), kNow + 4s).at(0)));  // 3 messages since
    const auto idle = udp.encode({}, kNow + 15s);  // the timer, with nothing to send
    REQUIRE(idle.size() == 1);
    CHECK(has_templates(idle[0]));
    CHECK(get16(idle[0], 2) == idle[0].size());
    CHECK(udp.template_messages() == 3);

    ipfix::Session tcp({ipfix::Layout::Biflow, 1, 1400, 10s, 3, false});
    CHECK(has_templates(tcp.encode(ptrs(one), kNow).at(0)));
    for (int i = 1; i <= 5; ++i) {
        CHECK_FALSE(has_templates(tcp.encode(ptrs(one), kNow + i * 20s).at(0)));
    }
    tcp.restart();  // reconnected: a new transport session
    const auto again = tcp.encode(ptrs(one), kNow + 200s);
    CHECK(has_templates(again.at(0)));
    CHECK(get32(again.at(0), 8) == 0);
}

TEST_CASE("a message size that cannot hold the templates and two records is refused") {
    CHECK_THROWS_AS(ipfix::MessageBuilder(ipfix::Layout::Biflow, 1, 500), std::invalid_argument);
    CHECK_NOTHROW(ipfix::MessageBuilder(ipfix::Layout::Biflow, 1, 600));
}
