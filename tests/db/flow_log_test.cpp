// The flow log against a real PostgreSQL: COPY round trip field by field,
// day partitions created as records need them (also by two gateways at
// once), retention dropping whole partitions, the NAT lookup's semantics, and
// the sink's filters.
#include <doctest/doctest.h>

#include <thread>

#include "db_fixture.hpp"
#include "metrics/record_metrics.hpp"
#include "sinks/flow_log_sink.hpp"
#include "store/flow_log_store.hpp"
#include "store/subscriber_store.hpp"

using namespace ctquota;
using namespace std::chrono;
using ctquota::dbtest::ScratchDatabase;

namespace {

core::IpAddress ip(const char* text) {
    return *core::IpAddress::parse(text);
}

std::int64_t ns(core::TimePoint t) {
    return t.time_since_epoch().count();
}

const core::TimePoint kT0{sys_days{2026y / 11 / 26} + 23h + 59min + 50s};

// subscriber `sub` at 100.64.1.<host>:sport -> remote:dport over `proto`, SNAT to
// 198.18.0.1:nat_port, from `start` to `end`.
core::FlowRecord outbound(core::SubscriberId sub, const char* src, std::uint16_t sport,
                          const char* remote, std::uint16_t dport, std::uint16_t nat_port,
                          core::TimePoint start, core::TimePoint end, std::uint8_t proto = 17) {
    core::FlowRecord r;
    r.kind = core::RecordKind::Final;
    r.subscriber = sub;
    r.direction = core::Direction::OrigIsUpload;
    r.orig = {ip(src), ip(remote), sport, dport, proto};
    r.reply = {ip(remote), ip("198.18.0.1"), dport, nat_port, proto};
    r.orig_total = {1000, 10};
    r.reply_total = {5000, 8};
    r.start_ns = ns(start);
    r.end_ns = ns(end);
    r.conntrack_id = 77;
    r.flow_id = std::hash<std::string>{}(std::string(src) + std::to_string(sport) + remote);
    return r;
}

void write(store::FlowLogStore& s, const std::vector<core::FlowRecord>& rs) {
    std::vector<const core::FlowRecord*> p;
    for (const auto& r : rs) {
        p.push_back(&r);
    }
    s.write(p);
}

std::vector<std::optional<std::string>> holders(store::Database& db, const char* address,
                                                std::uint16_t port, core::TimePoint at,
                                                store::NatLookup extra = {}) {
    extra.address = address;
    extra.port = port;
    extra.at = at;
    std::vector<std::optional<std::string>> out;
    for (const auto& h : store::FlowLogQueries(db).nat_holders(extra, 100)) {
        out.push_back(h.subscriber);
    }
    return out;
}

std::int64_t partitions(ScratchDatabase& s) {
    return s.scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'flow_log'::regclass");
}

}  // namespace

TEST_CASE("flow log: a record's every column survives COPY, partitions per day of its end") {
    ScratchDatabase s;
    store::FlowLogStore log(s.db(), "gw\t\\1");
    auto a = outbound(5, "100.64.1.1", 40000, "198.18.0.2", 53, 61000, kT0 - 5s, kT0 + 1s);
    a.start_ns += 123'456;           // microseconds survive, nanoseconds are cut
    a.flow_id = 0xfedcba9876543210;  // above INT64_MAX: the bits are kept
    core::FlowRecord v6;
    v6.kind = core::RecordKind::Interim;
    v6.start_is_first_seen = true;
    v6.direction = core::Direction::OrigIsDownload;
    v6.orig = {ip("2001:db8:ffff::2"), ip("2001:db8:0:1::1"), 443, 50000, 6};
    v6.reply = v6.orig;
    std::swap(v6.reply.src, v6.reply.dst);
    std::swap(v6.reply.src_port, v6.reply.dst_port);
    v6.orig_total = {1, 2};
    v6.reply_total = {3, 4};
    v6.start_ns = ns(kT0);
    v6.end_ns = ns(kT0 + 15s);  // the next day
    write(log, {a, v6});
    CHECK(s.count("flow_log") == 2);
    CHECK(partitions(s) == 2);
    CHECK(s.count("flow_log_p20261126") == 1);
    CHECK(s.count("flow_log_p20261127") == 1);

    const auto row = s.query(
        "SELECT gateway_id, flow_end = '2026-11-26 23:59:51+00', "
        "(extract(epoch from flow_start) * 1000000)::bigint, final, start_first_seen, "
        "subscriber_id, direction, l4proto, host(orig_src), orig_sport, host(orig_dst), "
        "orig_dport, host(reply_src), reply_sport, host(reply_dst), reply_dport, "
        "host(public_address), public_port, orig_bytes, orig_packets, reply_bytes, reply_packets, "
        "conntrack_id, flow_id FROM flow_log WHERE l4proto = 17")[0];
    CHECK(row[0].as<std::string>() == "gw\t\\1");
    CHECK(row[1].as<bool>());
    CHECK(row[2].as<std::int64_t>() == (ns(kT0 - 5s) + 123'456) / 1000);
    CHECK(row[3].as<bool>());
    CHECK_FALSE(row[4].as<bool>());
    CHECK(row[5].as<std::int64_t>() == 5);
    CHECK(row[6].as<int>() == 1);
    CHECK(row[8].as<std::string>() == "100.64.1.1");
    CHECK(row[9].as<int>() == 40000);
    CHECK(row[14].as<std::string>() == "198.18.0.1");
    CHECK(row[15].as<int>() == 61000);
    CHECK(row[16].as<std::string>() == "198.18.0.1");  // public end: after SNAT
    CHECK(row[17].as<int>() == 61000);
    CHECK(row[18].as<std::int64_t>() == 1000);
    CHECK(row[21].as<std::int64_t>() == 8);
    CHECK(row[22].as<std::int64_t>() == 77);
    CHECK(static_cast<std::uint64_t>(row[23].as<std::int64_t>()) == 0xfedcba9876543210);

    const auto six = s.query(
        "SELECT subscriber_id IS NULL, start_first_seen, final, host(public_address), public_port "
        "FROM flow_log WHERE l4proto = 6")[0];
    CHECK(six[0].as<bool>());
    CHECK(six[1].as<bool>());
    CHECK_FALSE(six[2].as<bool>());
    CHECK(six[3].as<std::string>() == "2001:db8:0:1::1");  // opened toward it: the destination
    CHECK(six[4].as<int>() == 50000);
}

TEST_CASE("flow log: two gateways needing the same new day both write") {
    ScratchDatabase s;
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int g = 0; g < 4; ++g) {
        threads.emplace_back([&, g] {
            store::Database db(s.url());
            store::FlowLogStore log(db, "gw-" + std::to_string(g));
            write(log, {outbound(1, "100.64.1.1", static_cast<std::uint16_t>(1000 + g),
                                 "198.18.0.2", 53, 2000, kT0, kT0 + 1s)});
            ++ok;
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(ok == 4);
    CHECK(s.count("flow_log") == 4);
    CHECK(partitions(s) == 1);
}

TEST_CASE("flow log retention drops whole day partitions older than it, nothing else") {
    ScratchDatabase s;
    store::FlowLogStore log(s.db(), "gw");
    const auto today = kT0;
    write(log,
          {outbound(1, "100.64.1.1", 1, "198.18.0.2", 53, 1, today - days(200), today - days(200)),
           outbound(1, "100.64.1.1", 2, "198.18.0.2", 53, 2, today - days(181), today - days(181)),
           outbound(1, "100.64.1.1", 3, "198.18.0.2", 53, 3, today - days(10), today - days(10)),
           outbound(1, "100.64.1.1", 4, "198.18.0.2", 53, 4, today, today)});
    // An operator's own partition with another name is not ours to drop.
    s.exec(
        "CREATE TABLE flow_log_archive PARTITION OF flow_log FOR VALUES FROM "
        "('2000-01-01') TO ('2000-01-02')");
    CHECK(partitions(s) == 5);
    const auto dropped = log.drop_partitions_before(today - days(180));
    CHECK(dropped == std::vector<std::string>{"flow_log_p20260510", "flow_log_p20260529"});
    CHECK(partitions(s) == 3);
    CHECK(s.count("flow_log") == 2);
    CHECK(log.drop_partitions_before(today - days(180)).empty());
    // A dropped day comes back when a record needs it.
    write(log, {outbound(1, "100.64.1.1", 5, "198.18.0.2", 53, 5, today - days(200),
                         today - days(200))});
    CHECK(s.count("flow_log") == 3);
}

TEST_CASE("nat lookup: who held a public address and port at a time") {
    ScratchDatabase s;
    store::SubscriberStore subs(s.db());
    const auto alice = subs.add("alice", {}, dbtest::now_us());
    const auto bob = subs.add("bob", {}, dbtest::now_us());
    store::FlowLogStore log(s.db(), "gw");
    // alice and bob both behind 198.18.0.1:61000, to different servers, overlapping in time.
    auto a = outbound(alice, "100.64.1.1", 40000, "198.18.0.2", 53, 61000, kT0, kT0 + 10s);
    auto b = outbound(bob, "100.64.1.2", 40001, "198.18.0.3", 53, 61000, kT0 + 5s, kT0 + 20s);
    // A long TCP connection of bob's, still open: interim records only.
    auto c1 =
        outbound(bob, "100.64.1.2", 50000, "198.18.0.4", 443, 62000, kT0 - 1h, kT0 - 30min, 6);
    c1.kind = core::RecordKind::Interim;
    auto c2 = c1;
    c2.end_ns = ns(kT0 + 30min);
    c2.orig_total = {9999, 99};
    // A connection with interim and final records: one answer, its end.
    auto d1 = outbound(alice, "100.64.1.1", 40002, "198.18.0.2", 53, 63000, kT0, kT0 + 5min);
    d1.kind = core::RecordKind::Interim;
    auto d2 = outbound(alice, "100.64.1.1", 40002, "198.18.0.2", 53, 63000, kT0, kT0 + 7min);
    // Opened from outside through a port forward to alice: public = the destination used.
    core::FlowRecord in;
    in.subscriber = alice;
    in.direction = core::Direction::OrigIsDownload;
    in.orig = {ip("198.18.0.9"), ip("198.18.0.1"), 5555, 8080, 6};
    in.reply = {ip("100.64.1.1"), ip("198.18.0.9"), 80, 5555, 6};
    in.start_ns = ns(kT0);
    in.end_ns = ns(kT0 + 1min);
    in.flow_id = 4242;
    write(log, {a, b, c1, c2, d1, d2, in});

    using Subs = std::vector<std::optional<std::string>>;
    CHECK(holders(s.db(), "198.18.0.1", 61000, kT0 + 7s) == Subs{"alice", "bob"});
    CHECK(holders(s.db(), "198.18.0.1", 61000, kT0) == Subs{"alice"});  // both ends inclusive
    CHECK(holders(s.db(), "198.18.0.1", 61000, kT0 + 10s) == Subs{"alice", "bob"});
    CHECK(holders(s.db(), "198.18.0.1", 61000, kT0 + 15s) == Subs{"bob"});
    CHECK(holders(s.db(), "198.18.0.1", 61000, kT0 + 21s).empty());
    CHECK(holders(s.db(), "198.18.0.1", 61000, kT0 - 1s).empty());
    CHECK(holders(s.db(), "198.18.0.1", 61001, kT0 + 7s).empty());  // a port nobody used
    CHECK(holders(s.db(), "198.18.0.7", 61000, kT0 + 7s).empty());
    // RFC 6302: with the far end, one answer.
    store::NatLookup remote;
    remote.remote_address = "198.18.0.3";
    remote.remote_port = 53;
    CHECK(holders(s.db(), "198.18.0.1", 61000, kT0 + 7s, remote) == Subs{"bob"});
    remote.remote_port = 54;
    CHECK(holders(s.db(), "198.18.0.1", 61000, kT0 + 7s, remote).empty());
    store::NatLookup tcp;
    tcp.l4proto = 6;
    CHECK(holders(s.db(), "198.18.0.1", 61000, kT0 + 7s, tcp).empty());

    store::NatLookup q;
    q.address = "198.18.0.1";
    q.port = 62000;
    q.at = kT0;
    const auto open = store::FlowLogQueries(s.db()).nat_holders(q, 10);
    REQUIRE(open.size() == 1);
    CHECK(open[0].subscriber == "bob");
    CHECK_FALSE(open[0].ended);
    CHECK(open[0].last_seen == core::TimePoint{nanoseconds{ns(kT0 + 30min)}});
    CHECK(open[0].orig == core::Counters{9999, 99});
    CHECK(open[0].original_src.address == "100.64.1.2");
    CHECK(open[0].original_src.port == 50000);
    CHECK(open[0].reply_dst.port == 62000);
    CHECK(open[0].l4proto == 6);

    q.port = 63000;
    q.at = kT0 + 6min;
    const auto ended = store::FlowLogQueries(s.db()).nat_holders(q, 10);
    REQUIRE(ended.size() == 1);
    CHECK(ended[0].ended);
    CHECK(ended[0].last_seen == core::TimePoint{nanoseconds{ns(kT0 + 7min)}});

    CHECK(holders(s.db(), "198.18.0.1", 8080, kT0 + 30s) == Subs{"alice"});
    store::NatLookup inbound;
    inbound.remote_address = "198.18.0.9";
    inbound.remote_port = 5555;
    CHECK(holders(s.db(), "198.18.0.1", 8080, kT0 + 30s, inbound) == Subs{"alice"});
}

TEST_CASE("the flow log sink: only translated connections, only some subscribers, retention") {
    ScratchDatabase s;
    store::SubscriberStore subs(s.db());
    const auto alice = subs.add("alice", {}, dbtest::now_us());
    const auto bob = subs.add("bob", {}, dbtest::now_us());
    core::SystemClock clock;
    metrics::RecordMetrics m;
    const auto now = clock.now();
    auto nat = outbound(alice, "100.64.1.1", 1, "198.18.0.2", 53, 61000, now - 2s, now - 1s);
    auto plain =
        outbound(alice, "2001:db8:0:1::1", 2, "2001:db8:ffff::2", 53, 2, now - 2s, now - 1s);
    plain.reply = {plain.orig.dst, plain.orig.src, 53, 2, 17};
    auto bobs = outbound(bob, "100.64.1.2", 3, "198.18.0.2", 53, 61001, now - 2s, now - 1s);
    auto nobody =
        outbound(core::kUnattributed, "100.64.9.9", 4, "198.18.0.2", 53, 61002, now - 2s, now - 1s);
    const auto batch = std::make_shared<const std::vector<core::FlowRecord>>(
        std::vector{nat, plain, bobs, nobody});

    sinks::FlowLogConfig config;
    config.enabled = true;
    config.only_translated = true;
    config.subscribers = {"alice", "nobody-by-that-name"};
    config.retention = days(30);
    sinks::FlowLogSink sink(config, s.url(), "gw", clock, m);
    sink.write({batch});
    CHECK(s.scalar("SELECT count(*) FROM flow_log") == 1);
    CHECK(s.scalar("SELECT orig_sport FROM flow_log") == 1);

    config.only_translated = false;
    config.subscribers.clear();
    sinks::FlowLogSink all(config, s.url(), "gw", clock, m);
    all.write({batch});
    CHECK(s.scalar("SELECT count(*) FROM flow_log") == 5);

    // tick(): tomorrow's partition ready, partitions past the retention gone.
    store::FlowLogStore log(s.db(), "gw");
    write(log,
          {outbound(alice, "100.64.1.1", 9, "198.18.0.2", 53, 9, now - days(40), now - days(40))});
    all.tick();
    CHECK(m.flowlog_partitions_dropped == 1);
    CHECK(s.scalar("SELECT count(*) FROM flow_log") == 5);
    CHECK(
        s.scalar("SELECT count(*) FROM pg_class WHERE relname = '" +
                 store::flow_log_partition_name(floor<days>(now + 24h).time_since_epoch().count()) +
                 "'") == 1);
}
