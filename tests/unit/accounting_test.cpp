#include <doctest/doctest.h>

#include "core/accounting.hpp"
#include "core/calendar.hpp"
#include "core/checkpoint_codec.hpp"
#include "core/spill_codec.hpp"
#include "test_helpers.hpp"

using namespace ctquota;
using namespace ctquota::test;
using namespace std::chrono;

namespace {

core::Binding bind(core::SubscriberId s, const char* prefix) {
    return core::Binding{s, *core::Prefix::parse(prefix), core::TimePoint{}, std::nullopt};
}

core::Usage total_of(const core::UsageBatch& b, core::SubscriberId s) {
    core::Usage u;
    for (const auto& p : b.periods) {
        if (p.subscriber == s) {
            u += p.usage;
        }
    }
    return u;
}

}  // namespace

TEST_CASE("attribution: pre-NAT source is upload, inbound is the other way round") {
    core::ManualClock clock(core::TimePoint{sys_days{2026y / 11 / 26}});
    core::Accounting acc(clock);
    acc.set_index(std::make_shared<core::SubscriberIndex>(std::vector{
        bind(1, "100.64.1.1/32"), bind(2, "2001:db8:0:2::/64"), bind(3, "100.64.1.3/32")}));

    acc.apply(destroy(flow(1, "100.64.1.1", 1000), 100, 2, 300, 3));  // sub 1 opened it
    acc.apply(destroy(flow(2, "2001:db8:0:2::1", 1000, "2001:db8:ffff::2"), 10, 1, 20, 1));
    // Opened from outside toward subscriber 3: orig src is the server.
    acc.apply(destroy(flow(3, "198.18.0.2", 5555, "100.64.1.3"), 40, 1, 900, 2));
    // Inbound through DNAT: the subscriber only appears as the reply source.
    auto dnat = flow(4, "198.18.0.9", 6666, "198.18.0.1");
    dnat.reply.src = ip("100.64.1.3");
    acc.apply(destroy(dnat, 60, 1, 70, 1));
    // Nobody's: counted as unattributed, not dropped.
    acc.apply(destroy(flow(5, "100.64.99.99", 1), 11, 1, 22, 1));

    auto batch = acc.take(false);
    CHECK(total_of(batch.usage, 1) == core::Usage{{100, 2}, {300, 3}});
    CHECK(total_of(batch.usage, 2) == core::Usage{{10, 1}, {20, 1}});
    CHECK(total_of(batch.usage, 3) == core::Usage{{900 + 70, 3}, {40 + 60, 2}});
    REQUIRE(batch.usage.unattributed.size() == 1);
    CHECK(batch.usage.unattributed[0].usage == core::Usage{{11, 1}, {22, 1}});
    CHECK(acc.stats().unattributed_bytes == 33);
}

TEST_CASE("a new index re-attributes flows already cached in the ledger") {
    core::ManualClock clock(core::TimePoint{sys_days{2026y / 11 / 26}});
    core::Accounting acc(clock);
    const auto f = flow(1, "100.64.1.1", 1000);
    acc.dump_begin(1);
    acc.apply(poll(f, 100, 1, 100, 1));  // nobody's yet
    acc.dump_end(1, true);
    acc.set_index(std::make_shared<core::SubscriberIndex>(std::vector{bind(1, "100.64.1.1/32")}));
    acc.dump_begin(2);
    acc.apply(poll(f, 150, 2, 250, 2));
    acc.dump_end(2, true);
    auto batch = acc.take(false);
    CHECK(total_of(batch.usage, 1) == core::Usage{{50, 1}, {150, 1}});
}

TEST_CASE("usage lands in the hour and period of the clock") {
    core::ManualClock clock(core::TimePoint{sys_days{2026y / 11 / 30} + 23h + 59min});
    core::Accounting acc(clock);
    acc.set_index(std::make_shared<core::SubscriberIndex>(std::vector{bind(1, "100.64.1.1/32")}));
    acc.apply(destroy(flow(1, "100.64.1.1", 1), 10, 1, 10, 1));
    clock.advance(2min);
    acc.apply(destroy(flow(2, "100.64.1.1", 2), 20, 1, 20, 1));
    auto batch = acc.take(false);
    REQUIRE(batch.usage.periods.size() == 2);
    REQUIRE(batch.usage.hours.size() == 2);
}

namespace {

core::FlowSample as_of(core::FlowSample s, core::TimePoint t) {
    s.as_of_ns = duration_cast<nanoseconds>(t.time_since_epoch()).count();
    return s;
}

std::vector<core::TimePoint> hours_of(const core::UsageBatch& b) {
    std::vector<core::TimePoint> out;
    for (const auto& h : b.hours) {
        out.push_back(h.hour);
    }
    return out;
}

}  // namespace

TEST_CASE("usage lands in the hour and period of the sample's own time, not of its processing") {
    // A restart at 00:30 on Dec 1 reads a DESTROY whose flow ended at 23:58 on
    // Nov 30 and a dump that read a live flow at 00:29: each keeps its hour.
    const core::TimePoint restart{sys_days{2026y / 12 / 1} + 30min};
    core::ManualClock clock(restart);
    core::Accounting acc(clock);
    acc.set_index(std::make_shared<core::SubscriberIndex>(std::vector{bind(1, "100.64.1.1/32")}));
    const core::TimePoint ended{sys_days{2026y / 11 / 30} + 23h + 58min};
    acc.apply(as_of(destroy(flow(1, "100.64.1.1", 1), 10, 1, 10, 1), ended));
    acc.dump_begin(1);
    acc.apply(as_of(poll(flow(2, "100.64.1.1", 2), 20, 1, 20, 1), restart - 1min));
    acc.dump_end(1, true);
    auto batch = acc.take(false);
    CHECK(hours_of(batch.usage) ==
          std::vector<core::TimePoint>{core::TimePoint{sys_days{2026y / 11 / 30} + 23h},
                                       core::TimePoint{sys_days{2026y / 12 / 1}}});
    REQUIRE(batch.usage.periods.size() == 2);  // November's cycle and December's
    CHECK(batch.usage.periods[0].period_start == core::TimePoint{sys_days{2026y / 11 / 1}});
    CHECK(batch.usage.periods[0].usage == core::Usage{{10, 1}, {10, 1}});
    CHECK(acc.stats().implausible_times == 0);
}

TEST_CASE("a sample without a time, or with an implausible one, is counted at processing time") {
    const core::TimePoint now{sys_days{2026y / 12 / 1} + 12h + 30min};
    core::ManualClock clock(now);
    core::Accounting acc(clock);
    acc.set_index(std::make_shared<core::SubscriberIndex>(std::vector{bind(1, "100.64.1.1/32")}));
    acc.apply(destroy(flow(1, "100.64.1.1", 1), 10, 1, 10, 1));                   // timestamps off
    acc.apply(as_of(destroy(flow(2, "100.64.1.1", 2), 10, 1, 10, 1), now + 1h));  // ahead
    acc.apply(as_of(destroy(flow(3, "100.64.1.1", 3), 10, 1, 10, 1),
                    core::TimePoint{sys_days{1970y / 1 / 1} + 5s}));  // clock not set yet
    // Slightly ahead (clocks of the kernel and the offset file read apart): its own time.
    acc.apply(as_of(destroy(flow(4, "100.64.1.1", 4), 10, 1, 10, 1), now + 30s));
    auto batch = acc.take(false);
    CHECK(hours_of(batch.usage) ==
          std::vector<core::TimePoint>{core::TimePoint{sys_days{2026y / 12 / 1} + 12h}});
    CHECK(acc.stats().implausible_times == 2);
    CHECK(core::usage_time(as_of(flow(5, "100.64.1.1", 5), now - 2h), now) == now - 2h);
}

TEST_CASE("bindings are looked up at the sample's own time") {
    // The address moved from subscriber 1 to 2 at 12:00; a flow of 1 that
    // ended at 11:59 is read at 12:05.
    const core::TimePoint noon{sys_days{2026y / 12 / 1} + 12h};
    core::ManualClock clock(noon + 5min);
    core::Accounting acc(clock);
    const auto prefix = *core::Prefix::parse("100.64.1.1/32");
    acc.set_index(std::make_shared<core::SubscriberIndex>(
        std::vector{core::Binding{1, prefix, core::TimePoint{}, noon},
                    core::Binding{2, prefix, noon, std::nullopt}}));
    acc.apply(as_of(destroy(flow(1, "100.64.1.1", 1), 10, 1, 10, 1), noon - 1min));
    acc.apply(as_of(destroy(flow(2, "100.64.1.1", 2), 20, 1, 20, 1), noon + 1min));
    auto batch = acc.take(false);
    CHECK(total_of(batch.usage, 1) == core::Usage{{10, 1}, {10, 1}});
    CHECK(total_of(batch.usage, 2) == core::Usage{{20, 1}, {20, 1}});
}

namespace {
// Subscriber 1: cycle from the 15th, 198.18.9.0/24 zero-rated, free from 01:00 to 07:00 UTC.
class FakePolicy final : public core::UsageRules {
  public:
    [[nodiscard]] core::Period period(core::SubscriberId, core::TimePoint) const override {
        return core::Period{sys_days{2026y / 11 / 15}, sys_days{2026y / 12 / 15}};
    }
    [[nodiscard]] core::UsageClass classify(core::SubscriberId, const core::IpAddress& remote,
                                            core::TimePoint t) const override {
        const auto hour = floor<hours>(t - floor<days>(t)).count();
        if (hour >= 1 && hour < 7) {
            return core::UsageClass::Free;
        }
        return zero_.contains(remote) ? core::UsageClass::ZeroRated : core::UsageClass::Counted;
    }

  private:
    core::Prefix zero_ = *core::Prefix::parse("198.18.9.0/24");
};
}  // namespace

TEST_CASE("the usage policy sets the period and classifies by the far end and the time") {
    core::ManualClock clock(core::TimePoint{sys_days{2026y / 11 / 26} + 12h});
    core::Accounting acc(clock, std::make_shared<FakePolicy>());
    acc.set_index(std::make_shared<core::SubscriberIndex>(std::vector{bind(1, "100.64.1.1/32")}));

    acc.apply(destroy(flow(1, "100.64.1.1", 1000, "198.18.0.2"), 100, 1, 1000, 1));  // counted
    acc.apply(destroy(flow(2, "100.64.1.1", 1001, "198.18.9.7"), 10, 1, 20, 1));     // zero-rated
    // Opened from the zero-rated network toward the subscriber: the far end is the source.
    acc.apply(destroy(flow(3, "198.18.9.8", 5555, "100.64.1.1"), 5, 1, 6, 1));
    clock.set(core::TimePoint{sys_days{2026y / 11 / 27} + 3h});  // inside the free window
    acc.apply(destroy(flow(4, "100.64.1.1", 1002, "198.18.9.7"), 1, 1, 2, 1));

    auto batch = acc.take(false);
    REQUIRE(batch.usage.periods.size() == 1);
    const auto& p = batch.usage.periods[0];
    CHECK(p.period_start == core::TimePoint{sys_days{2026y / 11 / 15}});
    CHECK(p.period_end == core::TimePoint{sys_days{2026y / 12 / 15}});
    CHECK(p.usage == core::Usage{{100 + 10 + 6 + 1, 4}, {1000 + 20 + 5 + 2, 4}});
    CHECK(p.zero_rated == core::Usage{{10 + 6, 2}, {20 + 5, 2}});
    CHECK(p.free == core::Usage{{1, 1}, {2, 1}});  // free wins over zero-rated
}

namespace {

core::Usage sum_hours(const std::vector<core::HourUsage>& hours) {
    core::Usage u;
    for (const auto& h : hours) {
        u += h.usage;
    }
    return u;
}

}  // namespace

TEST_CASE("a spill survives its encoding") {
    core::Spill s;
    s.journal_id = 0xfedcba9876543210ull;
    s.base_token = 42;
    s.batch.journal_position = 123456789;
    const core::Period p{sys_days{2026y / 11 / 15}, sys_days{2026y / 12 / 15}};
    auto h = core::hour_usage(7, core::TimePoint{sys_days{2026y / 11 / 20} + 5h}, p,
                              core::Usage{{100, 2}, {300, 3}});
    h.free = core::Usage{{10, 1}, {0, 0}};
    h.zero_rated = core::Usage{{0, 0}, {30, 1}};
    s.batch.usage.hours = {h, core::hour_usage(8, h.hour, p, core::Usage{{1, 1}, {2, 1}})};
    s.batch.usage.unattributed = {
        core::hour_usage(core::kUnattributed, h.hour, {}, core::Usage{{5, 1}, {6, 1}})};
    const core::TimePoint lost_at{sys_days{2026y / 11 / 20} + 4h};
    s.batch.checkpoint.upserts = {
        {core::FlowKey::of(flow(1, "100.64.1.1", 1)), {10, 1}, {20, 2}},
        {core::FlowKey::of(flow(4, "100.64.1.4", 4)), {5, 1}, {5, 1}, true, lost_at}};
    s.batch.checkpoint.removals = {
        core::FlowKey::of(flow(2, "2001:db8:0:1::1", 2, "2001:db8:ffff::2"))};
    s.tombstones = {core::FlowKey::of(flow(3, "100.64.1.1", 3))};
    const auto bytes = core::encode_spill(s);
    const auto back = core::decode_spill(bytes);
    REQUIRE(back);
    CHECK(back->journal_id == s.journal_id);
    CHECK(back->base_token == 42);
    CHECK(back->batch.journal_position == 123456789);
    REQUIRE(back->batch.usage.hours.size() == 2);
    CHECK(static_cast<const core::ClassifiedUsage&>(back->batch.usage.hours[0]) ==
          static_cast<const core::ClassifiedUsage&>(h));
    CHECK(back->batch.usage.hours[0].hour == h.hour);
    CHECK(back->batch.usage.hours[0].period_end == p.end);
    CHECK(back->batch.usage.unattributed.size() == 1);
    REQUIRE(back->batch.checkpoint.upserts.size() == 2);
    CHECK_FALSE(back->batch.checkpoint.upserts[0].lost);
    CHECK(back->batch.checkpoint.upserts[1].lost);  // a lost flow's row and its hour
    CHECK(back->batch.checkpoint.upserts[1].lost_at == lost_at);
    CHECK(back->batch.checkpoint.removals == s.batch.checkpoint.removals);
    CHECK(back->tombstones == s.tombstones);
    CHECK_FALSE(core::decode_spill(bytes.substr(0, bytes.size() - 1)));
    CHECK_FALSE(core::decode_spill("CTQL" + bytes.substr(4)));
}

TEST_CASE("a run restored from a spill and the journal after it credits like one that went on") {
    // Stored: the checkpoint and totals of the last commit. Then the database
    // goes away: the flusher holds everything since, spills it with the
    // tombstones, the journal before the spill goes, the daemon is killed.
    core::ManualClock clock(core::TimePoint{sys_days{2026y / 11 / 26} + 12h});
    const auto index =
        std::make_shared<core::SubscriberIndex>(std::vector{bind(1, "100.64.1.1/32")});
    const auto live = flow(1, "100.64.1.1", 1);    // long-lived, stored
    const auto ends = flow(2, "100.64.1.1", 2);    // stored, ends during the outage
    const auto short1 = flow(3, "100.64.1.1", 3);  // begins and ends during the outage
    const auto later = flow(4, "100.64.1.1", 4);   // ends after the spill (journal)
    core::Accounting before(clock);
    before.set_index(index);
    before.dump_begin(1);
    before.apply(poll(live, 100, 1, 1000, 1));
    before.apply(poll(ends, 50, 1, 500, 1));
    before.dump_end(1, true);
    auto committed = before.take(true);
    before.committed(committed);

    before.dump_begin(2);
    before.apply(poll(live, 150, 2, 1500, 2));
    before.dump_end(2, true);
    before.apply(destroy(ends, 60, 2, 600, 2));
    before.apply(destroy(short1, 7, 1, 70, 1));
    std::vector<core::FlowKey> tombstones = before.ledger().tombstone_keys();
    const auto held = before.take(false);
    before.give_back(held);  // the flush failed: spilled
    const auto spill = *core::decode_spill(core::encode_spill({1, 99, held, tombstones}));

    core::Accounting after(clock);  // the next run
    after.set_index(index);
    after.restore_ledger(core::replay_checkpoints({*core::decode_checkpoint(
                             core::encode_checkpoint(committed.checkpoint))}),
                         clock.now());
    after.restore_spill(spill.batch, spill.tombstones, clock.now());
    after.apply(destroy(later, 9, 1, 90, 1));   // replayed from the journal after the spill
    after.apply(destroy(short1, 7, 1, 70, 1));  // resent by the kernel: a duplicate
    after.dump_begin(1);
    after.apply(poll(live, 170, 3, 1700, 3));  // the first dump of the new run
    after.dump_end(1, true);
    const auto flushed = after.take(true);

    const core::Usage stored = sum_hours(committed.usage.hours);
    const core::Usage rest = sum_hours(flushed.usage.hours);
    const core::Usage all{
        {stored.up.bytes + rest.up.bytes, stored.up.packets + rest.up.packets},
        {stored.down.bytes + rest.down.bytes, stored.down.packets + rest.down.packets}};
    CHECK(all ==
          core::Usage{{170 + 60 + 7 + 9, 3 + 2 + 1 + 1}, {1700 + 600 + 70 + 90, 3 + 2 + 1 + 1}});
    // The checkpoint the next flush stores: the live flow at its last counters, nothing else.
    REQUIRE(flushed.checkpoint.upserts.size() == 1);
    CHECK(flushed.checkpoint.upserts[0].orig.bytes == 170);
    CHECK(flushed.checkpoint.removals.size() == 1);  // the stored flow that ended
    CHECK(flushed.journal_position == held.journal_position);
}

TEST_CASE("a dropped flow's final delta waits for drops that come after its DESTROY") {
    const core::TimePoint t0{sys_days{2026y / 12 / 7} + 10h};
    core::ManualClock clock(t0);
    core::Accounting acc(clock);
    acc.set_index(std::make_shared<core::SubscriberIndex>(std::vector{bind(1, "100.64.1.1/32")}));
    const auto f = flow(1, "100.64.1.1", 1000);
    const auto kernel = [&](core::Counters orig, core::Counters reply) {
        acc.drops().refresh({core::DropRecord{core::DropTable::key_of(f), {orig, reply}}});
    };

    SUBCASE("billed after the grace, less the packets dropped meanwhile") {
        kernel({52, 1}, {});  // the kernel quota dropped an ACK before the block
        acc.apply(destroy(f, 1000, 10, 5000, 10), t0);
        CHECK(acc.parked_finals() == 1);
        acc.settle_finals(t0 + 10ms);
        CHECK(acc.parked_finals() == 1);  // still within the grace
        // In flight when the entry was deleted: dropped after the DESTROY.
        kernel({104, 2}, {1500, 1});
        acc.settle_finals(t0 + core::kFinalGrace);
        CHECK(acc.parked_finals() == 0);
        CHECK(acc.stats().late_drop_bytes == 52 + 1500);
        const auto batch = acc.take(false);
        CHECK(total_of(batch.usage, 1) == core::Usage{{1000 - 104, 8}, {5000 - 1500, 9}});
        CHECK(acc.drops().take_erasures() == std::vector{core::DropTable::key_of(f)});
    }
    SUBCASE("a flush bills what still waits, with the drops known then") {
        kernel({52, 1}, {});
        acc.apply(destroy(f, 1000, 10, 5000, 10), t0);
        const auto batch = acc.take(false);
        CHECK(acc.parked_finals() == 0);
        CHECK(total_of(batch.usage, 1) == core::Usage{{1000 - 52, 9}, {5000, 10}});
    }
    SUBCASE("later drops beyond the final delta bill nothing, never less than nothing") {
        acc.dump_begin(1);
        acc.apply(poll(f, 900, 9, 5000, 10), t0);  // credited 900 up before the DESTROY
        acc.dump_end(1, true);
        kernel({0, 0}, {1, 1});  // a drop in the reply direction only: the flow is watched
        // Final delta: 100 B up; down was credited in full before its drop (never taken back).
        acc.apply(destroy(f, 1000, 10, 5000, 10), t0);
        kernel({400, 4}, {1, 1});
        acc.settle_finals(t0 + 1s);
        const auto batch = acc.take(false);
        CHECK(total_of(batch.usage, 1) == core::Usage{{900, 9}, {5000, 10}});
        CHECK(acc.stats().late_drop_bytes == 100);
    }
    SUBCASE("a flow without drops is billed at once") {
        acc.apply(destroy(f, 1000, 10, 5000, 10), t0);
        CHECK(acc.parked_finals() == 0);
        CHECK(total_of(acc.take(false).usage, 1) == core::Usage{{1000, 10}, {5000, 10}});
    }
}
