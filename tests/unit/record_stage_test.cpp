// sinks::RecordStage behind a real core::Accounting: what the ledger does
// with each sample decides which flow records come out, and a connection's
// records sum to its counters.
#include <doctest/doctest.h>

#include "core/accounting.hpp"
#include "sinks/record_stage.hpp"
#include "test_helpers.hpp"

using namespace ctquota;
using namespace ctquota::test;
using namespace std::chrono;

namespace {

constexpr auto kInterval = minutes(5);
const core::TimePoint kT0{sys_days{2026y / 11 / 26} + 8h};

std::uint64_t ns(core::TimePoint t) {
    return static_cast<std::uint64_t>(t.time_since_epoch().count());
}

// Accounting + the stage, fed like the accountant feeds them.
struct Pipeline {
    core::ManualClock clock{kT0};
    core::Accounting accounting{clock};
    std::vector<std::vector<core::FlowRecord>> batches;
    sinks::RecordStage stage{kInterval, clock,
                             [this](core::RecordBatch b) { batches.push_back(*b); }};

    Pipeline() {
        accounting.set_index(std::make_shared<core::SubscriberIndex>(std::vector{
            core::Binding{7, *core::Prefix::parse("100.64.1.1/32"), core::TimePoint{}, {}},
            core::Binding{8, *core::Prefix::parse("2001:db8:0:1::/64"), core::TimePoint{}, {}}}));
    }
    // One batch of samples; returns the records it made.
    std::vector<core::FlowRecord> feed(std::vector<core::FlowSample> samples) {
        const auto before = batches.size();
        for (const auto& s : samples) {
            stage.observe(s, accounting.apply(s, clock.now()), accounting.index());
        }
        stage.end_batch();
        return batches.size() > before ? batches.back() : std::vector<core::FlowRecord>{};
    }
    void dump(std::uint64_t seq, std::vector<core::FlowSample> samples, bool complete = true) {
        accounting.dump_begin(seq);
        feed(std::move(samples));
        accounting.dump_end(seq, complete);
        stage.dump_end(complete);
    }
};

core::FlowSample ended(core::FlowSample s, core::TimePoint stop) {
    s.stop_ns = ns(stop);
    return s;
}

core::Counters sum_orig(const std::vector<core::FlowRecord>& rs) {
    core::Counters c;
    for (const auto& r : rs) {
        c += r.orig_delta;
    }
    return c;
}

}  // namespace

TEST_CASE("a short connection: one final record with the kernel's times, NAT and subscriber") {
    Pipeline p;
    const auto f = flow(1, "100.64.1.1", 40000, "198.18.0.2", ns(kT0 - 3s));
    const auto out = p.feed({ended(destroy(f, 300, 3, 900, 2), kT0 - 1s)});
    REQUIRE(out.size() == 1);
    const auto& r = out[0];
    CHECK(r.kind == core::RecordKind::Final);
    CHECK(r.start_ns == static_cast<std::int64_t>(ns(kT0 - 3s)));
    CHECK(r.end_ns == static_cast<std::int64_t>(ns(kT0 - 1s)));
    CHECK_FALSE(r.start_is_first_seen);
    CHECK(r.subscriber == 7);
    CHECK(r.direction == core::Direction::OrigIsUpload);
    CHECK(r.orig_total == core::Counters{300, 3});
    CHECK(r.orig_delta == core::Counters{300, 3});
    CHECK(r.reply_delta == core::Counters{900, 2});
    CHECK(core::translated(r));
    CHECK(core::public_endpoint(r).address == ip("198.18.0.1"));
    CHECK(core::public_endpoint(r).port == 40000);
    CHECK(p.stage.remembered() == 0);  // short connections leave nothing behind

    SUBCASE("a resent DESTROY and a dump that raced it make nothing") {
        CHECK(p.feed({ended(destroy(f, 300, 3, 900, 2), kT0 - 1s)}).empty());
        p.dump(1, {poll(f, 300, 3, 900, 2)});
        CHECK(p.batches.size() == 1);
    }
}

TEST_CASE("a long connection: interim records every interval, deltas sum to the counters") {
    Pipeline p;
    const auto f = flow(2, "100.64.1.1", 40001, "198.18.0.2", ns(kT0));
    p.clock.set(kT0 + 1min);
    p.dump(1, {poll(f, 100, 1, 200, 2)});
    CHECK(p.batches.empty());  // young: no record, nothing remembered
    CHECK(p.stage.remembered() == 0);

    p.clock.set(kT0 + 5min + 1s);
    p.dump(2, {poll(f, 1000, 10, 2000, 20)});
    REQUIRE(p.batches.size() == 1);
    const auto first = p.batches.back().at(0);
    CHECK(first.kind == core::RecordKind::Interim);
    CHECK(first.end_ns == static_cast<std::int64_t>(ns(kT0 + 5min + 1s)));
    CHECK(first.orig_delta == core::Counters{1000, 10});
    CHECK(first.reply_total == core::Counters{2000, 20});

    p.clock.set(kT0 + 9min);
    p.dump(3, {poll(f, 1500, 15, 2500, 25)});
    CHECK(p.batches.size() == 1);  // 4 minutes since the last record

    p.clock.set(kT0 + 10min + 2s);
    p.dump(4, {poll(f, 1700, 17, 2500, 25)});
    REQUIRE(p.batches.size() == 2);
    CHECK(p.batches.back().at(0).orig_delta == core::Counters{700, 7});
    CHECK(p.batches.back().at(0).reply_delta == core::Counters{500, 5});

    p.clock.set(kT0 + 11min);
    const auto last = p.feed({ended(destroy(f, 1800, 18, 2600, 26), kT0 + 11min)});
    REQUIRE(last.size() == 1);
    CHECK(last[0].kind == core::RecordKind::Final);
    CHECK(last[0].orig_delta == core::Counters{100, 1});
    CHECK(last[0].start_ns == first.start_ns);
    CHECK(last[0].flow_id == first.flow_id);
    std::vector<core::FlowRecord> all;
    for (const auto& b : p.batches) {
        all.insert(all.end(), b.begin(), b.end());
    }
    CHECK(sum_orig(all) == core::Counters{1800, 18});
    CHECK(p.stage.remembered() == 0);
    CHECK(p.stage.stats().interim_records == 2);
    CHECK(p.stage.stats().final_records == 1);
}

TEST_CASE("first seen mid-life: the kernel's start, and an interim record at once") {
    Pipeline p;
    const auto f = flow(3, "100.64.1.1", 40002, "198.18.0.2", ns(kT0 - 2h));
    p.dump(1, {poll(f, 5000, 50, 7000, 70)});
    REQUIRE(p.batches.size() == 1);
    const auto& r = p.batches[0].at(0);
    CHECK(r.kind == core::RecordKind::Interim);
    CHECK(r.start_ns == static_cast<std::int64_t>(ns(kT0 - 2h)));
    CHECK_FALSE(r.start_is_first_seen);
    CHECK(r.subscriber == 7);
}

TEST_CASE("without a kernel start timestamp the start is when it was first seen") {
    Pipeline p;
    const auto f = flow(4, "100.64.1.1", 40003, "198.18.0.2", 0);
    p.dump(1, {poll(f, 10, 1, 10, 1)});
    CHECK(p.batches.empty());
    CHECK(p.stage.remembered() == 1);
    p.clock.set(kT0 + 5min);
    p.dump(2, {poll(f, 20, 2, 20, 2)});
    REQUIRE(p.batches.size() == 1);
    CHECK(p.batches[0].at(0).start_is_first_seen);
    CHECK(p.batches[0].at(0).start_ns == static_cast<std::int64_t>(ns(kT0)));
    p.clock.set(kT0 + 6min);
    const auto last = p.feed({destroy(f, 30, 3, 30, 3)});  // no stop timestamp either
    REQUIRE(last.size() == 1);
    CHECK(last[0].start_ns == static_cast<std::int64_t>(ns(kT0)));
    CHECK(last[0].end_ns == static_cast<std::int64_t>(ns(kT0 + 6min)));
    CHECK(last[0].orig_delta == core::Counters{10, 1});
}

TEST_CASE("an idle long connection still gets interim records, attributed by the index") {
    Pipeline p;
    const auto f = flow(5, "2001:db8:0:1::5", 40004, "2001:db8:ffff::2", ns(kT0 - 10min));
    p.dump(1, {poll(f, 10, 1, 10, 1)});
    p.clock.set(kT0 + 6min);
    p.dump(2, {poll(f, 10, 1, 10, 1)});  // nothing new: the ledger credits nothing
    REQUIRE(p.batches.size() == 2);
    const auto& r = p.batches[1].at(0);
    CHECK(r.orig_delta == core::Counters{0, 0});
    CHECK(r.subscriber == 8);
    CHECK(r.direction == core::Direction::OrigIsUpload);
    CHECK(core::public_endpoint(r).address == ip("2001:db8:ffff::1"));
}

TEST_CASE("a long connection that vanishes without DESTROY is forgotten after 31 complete dumps") {
    Pipeline p;
    const auto f = flow(6, "100.64.1.1", 40005, "198.18.0.2", ns(kT0 - 1h));
    p.dump(1, {poll(f, 10, 1, 10, 1)});
    CHECK(p.stage.remembered() == 1);
    for (std::uint64_t seq = 2; seq <= 40; ++seq) {
        p.dump(seq, {}, false);  // incomplete dumps prove nothing
    }
    CHECK(p.stage.remembered() == 1);
    for (std::uint64_t seq = 41; seq <= 70; ++seq) {
        p.dump(seq, {});
    }
    CHECK(p.stage.remembered() == 1);
    p.dump(71, {});
    CHECK(p.stage.remembered() == 0);
    CHECK(p.stage.stats().forgotten == 1);
}

TEST_CASE("counters that went backwards start the connection's reports afresh") {
    Pipeline p;
    const auto f = flow(7, "100.64.1.1", 40006, "198.18.0.2", ns(kT0 - 1h));
    p.dump(1, {poll(f, 1000, 10, 1000, 10)});
    p.clock.set(kT0 + 1min);
    p.dump(2, {poll(f, 50, 1, 50, 1)});  // zeroed by someone else
    REQUIRE(p.batches.size() == 2);
    CHECK(p.batches[1].at(0).orig_delta == core::Counters{50, 1});
}

TEST_CASE("one batch per end_batch, none when nothing was made") {
    Pipeline p;
    const auto a = flow(8, "100.64.1.1", 1, "198.18.0.2", ns(kT0 - 1s));
    const auto b = flow(9, "100.64.9.9", 2, "198.18.0.2", ns(kT0 - 1s));  // nobody's
    const auto out = p.feed({destroy(a, 1, 1, 1, 1), destroy(b, 2, 1, 2, 1)});
    CHECK(p.batches.size() == 1);
    REQUIRE(out.size() == 2);
    CHECK(out[1].subscriber == core::kUnattributed);
    CHECK(out[1].direction == core::Direction::None);
    p.feed({});
    CHECK(p.batches.size() == 1);
}
