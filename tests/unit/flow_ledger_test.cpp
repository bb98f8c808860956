#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/checkpoint_codec.hpp"
#include "core/flow_ledger.hpp"
#include "test_helpers.hpp"

using namespace ctquota;
using namespace ctquota::test;
using core::LedgerOutcome;

namespace {

// One step of an interleaving: a sample, a dump boundary, or a restart that
// goes through the encoded checkpoint.
struct Step {
    enum Kind { Sample, DumpBegin, DumpEnd, DumpEndIncomplete, Restart } kind = Sample;
    core::FlowSample sample{};
    std::uint64_t seq = 0;
};

Step s(const core::FlowSample& x) {
    return Step{Step::Sample, x, 0};
}
Step begin(std::uint64_t seq) {
    return Step{Step::DumpBegin, {}, seq};
}
Step end(std::uint64_t seq) {
    return Step{Step::DumpEnd, {}, seq};
}
Step end_incomplete(std::uint64_t seq) {
    return Step{Step::DumpEndIncomplete, {}, seq};
}
Step restart() {
    return Step{Step::Restart, {}, 0};
}

struct Totals {
    core::Counters orig;
    core::Counters reply;
};

struct Outcome {
    Totals credited;
    std::uint64_t lost = 0;
};

Outcome run(const std::vector<Step>& steps) {
    auto ledger = std::make_unique<core::FlowLedger>();
    std::vector<core::CheckpointChanges> stored;
    Outcome out;
    for (const auto& step : steps) {
        switch (step.kind) {
            case Step::Sample: {
                auto r = ledger->apply(step.sample);
                out.credited.orig += r.orig_delta;
                out.credited.reply += r.reply_delta;
                break;
            }
            case Step::DumpBegin:
                ledger->dump_begin(step.seq);
                break;
            case Step::DumpEnd:
                out.lost += ledger->dump_end(step.seq, true).size();
                break;
            case Step::DumpEndIncomplete:
                out.lost += ledger->dump_end(step.seq, false).size();
                break;
            case Step::Restart: {
                // What a flush stored survives; the in-memory ledger does not.
                auto changes = ledger->take_changes(false);
                stored.push_back(*core::decode_checkpoint(core::encode_checkpoint(changes)));
                ledger->changes_committed(changes);
                ledger = std::make_unique<core::FlowLedger>();
                ledger->restore(core::replay_checkpoints(stored), core::TimePoint{});
                break;
            }
        }
    }
    return out;
}

constexpr std::uint64_t kLost = core::FlowLedger::kMissedDumpsBeforeLost;

// `steps`, then `count` dumps that see nothing (numbered from `first`), then `after`.
std::vector<Step> with_empty_dumps(std::vector<Step> steps, std::uint64_t first,
                                   std::uint64_t count, const std::vector<Step>& after = {}) {
    for (std::uint64_t seq = first; seq < first + count; ++seq) {
        steps.push_back(begin(seq));
        steps.push_back(end(seq));
    }
    steps.insert(steps.end(), after.begin(), after.end());
    return steps;
}

struct Case {
    std::string name;
    std::vector<Step> steps;
    Totals expected;
    std::uint64_t lost = 0;
};

}  // namespace

TEST_CASE("ledger interleavings credit every byte exactly once") {
    const auto a = flow(7, "100.64.1.1", 4000);
    const auto reused_tuple =
        flow(7, "100.64.1.1", 4000, "198.18.0.2", 99'000);  // same id+tuple, new start
    const auto reused_id = flow(7, "100.64.1.2", 4001);     // same id, new tuple
    const std::vector<Case> cases = {
        {"destroy without poll", {s(destroy(a, 100, 2, 300, 3))}, {{100, 2}, {300, 3}}},
        {"poll then destroy",
         {begin(1), s(poll(a, 60, 1, 0, 0)), end(1), s(destroy(a, 100, 2, 300, 3))},
         {{100, 2}, {300, 3}}},
        {"several polls then destroy",
         {begin(1), s(poll(a, 10, 1, 5, 1)), end(1), begin(2), s(poll(a, 50, 2, 70, 2)), end(2),
          begin(3), s(poll(a, 50, 2, 70, 2)), end(3), s(destroy(a, 90, 3, 100, 4))},
         {{90, 3}, {100, 4}}},
        {"first seen mid-life counts the bytes before",
         {begin(4), s(poll(a, 5000, 9, 7000, 11)), end(4)},
         {{5000, 9}, {7000, 11}}},
        {"duplicate destroy (reliable delivery resend)",
         {s(destroy(a, 100, 2, 300, 3)), s(destroy(a, 100, 2, 300, 3))},
         {{100, 2}, {300, 3}}},
        {"dump sample processed after the destroy is stale",
         {begin(1), s(poll(a, 10, 1, 0, 0)), s(destroy(a, 100, 2, 300, 3)), s(poll(a, 60, 1, 0, 0)),
          end(1)},
         {{100, 2}, {300, 3}}},
        {"stale sample from the next dump that raced the destroy",
         {s(destroy(a, 100, 2, 300, 3)), begin(1), s(poll(a, 60, 1, 0, 0)), end(1)},
         {{100, 2}, {300, 3}}},
        {"id reused by a new tuple is a new flow",
         {begin(1), s(poll(a, 10, 1, 10, 1)), end(1), s(destroy(a, 20, 2, 20, 2)),
          s(destroy(reused_id, 500, 5, 600, 6))},
         {{520, 7}, {620, 8}}},
        {"id and tuple reused with a new start time is a new flow",
         {begin(1), s(poll(a, 10, 1, 10, 1)), end(1), s(destroy(a, 20, 2, 20, 2)),
          s(destroy(reused_tuple, 500, 5, 600, 6))},
         {{520, 7}, {620, 8}}},
        {"counters going backwards credit the new counters",
         {begin(1), s(poll(a, 100, 10, 100, 10)), end(1), begin(2), s(poll(a, 5, 1, 0, 0)), end(2)},
         {{105, 11}, {100, 10}}},
        {"restart between polls resumes from the checkpoint",
         {begin(1), s(poll(a, 100, 1, 200, 2)), end(1), restart(), begin(1),
          s(poll(a, 150, 2, 260, 3)), end(1), s(destroy(a, 170, 3, 300, 4))},
         {{170, 3}, {300, 4}}},
        {"restart then destroy without a poll",
         {begin(1), s(poll(a, 100, 1, 200, 2)), end(1), restart(), s(destroy(a, 170, 3, 300, 4))},
         {{170, 3}, {300, 4}}},
        {"resync: a flow missing from enough complete dumps is lost, not invented",
         with_empty_dumps({begin(1), s(poll(a, 100, 1, 200, 2)), end(1)}, 2, kLost),
         {{100, 1}, {200, 2}},
         1},
        {"a DESTROY held back by reliable delivery still credits only the rest",
         with_empty_dumps({begin(1), s(poll(a, 100, 1, 200, 2)), end(1)}, 2, kLost - 1,
                          {s(destroy(a, 120, 2, 220, 3))}),
         {{120, 2}, {220, 3}}},
        {"a DESTROY after the flow was declared lost credits only the rest",
         with_empty_dumps({begin(1), s(poll(a, 100, 1, 200, 2)), end(1)}, 2, kLost,
                          {s(destroy(a, 120, 2, 220, 3))}),
         {{120, 2}, {220, 3}},
         1},
        {"a DESTROY resent after the one that followed a lost verdict credits nothing",
         with_empty_dumps({begin(1), s(poll(a, 100, 1, 200, 2)), end(1)}, 2, kLost,
                          {s(destroy(a, 120, 2, 220, 3)), s(destroy(a, 120, 2, 220, 3))}),
         {{120, 2}, {220, 3}},
         1},
        {"a flow declared lost that a dump sees again credits only the difference",
         with_empty_dumps(
             {begin(1), s(poll(a, 100, 1, 200, 2)), end(1)}, 2, kLost,
             {begin(100), s(poll(a, 130, 2, 250, 3)), end(100), s(destroy(a, 140, 3, 260, 4))}),
         {{140, 3}, {260, 4}},
         1},
        {"a lost flow keeps its row: after a restart its DESTROY credits only the rest",
         with_empty_dumps({begin(1), s(poll(a, 100, 1, 200, 2)), end(1)}, 2, kLost,
                          {restart(), s(destroy(a, 120, 2, 220, 3))}),
         {{120, 2}, {220, 3}},
         1},
        {"after a restart, a dump that sees a lost flow again credits only the difference",
         with_empty_dumps({begin(1), s(poll(a, 100, 1, 200, 2)), end(1)}, 2, kLost,
                          {restart(), begin(1), s(poll(a, 130, 2, 250, 3)), end(1), restart(),
                           s(destroy(a, 140, 3, 260, 4))}),
         {{140, 3}, {260, 4}},
         1},
        {"incomplete dumps never declare flows lost",
         {begin(1), s(poll(a, 100, 1, 200, 2)), end(1), begin(2), end_incomplete(2), begin(3),
          end_incomplete(3), s(destroy(a, 120, 2, 220, 3))},
         {{120, 2}, {220, 3}}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const auto out = run(c.steps);
        CHECK(out.credited.orig == c.expected.orig);
        CHECK(out.credited.reply == c.expected.reply);
        CHECK(out.lost == c.lost);
    }
}

TEST_CASE("ledger keeps no entry for flows that were never polled") {
    core::FlowLedger ledger;
    for (std::uint32_t i = 0; i < 100; ++i) {
        ledger.apply(
            destroy(flow(i, "100.64.1.1", static_cast<std::uint16_t>(1000 + i)), 10, 1, 10, 1));
    }
    CHECK(ledger.live_flows() == 0);
    CHECK(ledger.take_changes(false).upserts.empty());
}

TEST_CASE("tombstones outlive two dumps until their time-to-live has passed") {
    const core::TimePoint t0{std::chrono::hours(1000)};
    const auto ttl = core::FlowLedger::kTombstoneTtl;
    const auto a = flow(1, "100.64.1.1", 1);
    core::FlowLedger ledger;
    ledger.dump_begin(1);
    CHECK(ledger.apply(destroy(a, 10, 1, 10, 1), t0).orig_delta.bytes == 10);
    ledger.dump_end(1, true, t0);
    ledger.dump_begin(2);
    ledger.dump_end(2, true, t0 + std::chrono::seconds(1));
    ledger.dump_begin(3);
    ledger.dump_end(3, true, t0 + ttl - std::chrono::seconds(1));  // two dumps, but too young
    CHECK(ledger.tombstones() == 1);
    // A resent DESTROY now (reliable delivery) is still recognised.
    CHECK(ledger.apply(destroy(a, 10, 1, 10, 1), t0 + ttl).outcome == LedgerOutcome::Duplicate);
    ledger.dump_begin(4);
    ledger.dump_end(4, true, t0 + ttl);
    CHECK(ledger.tombstones() == 0);
}

namespace {

const core::TimePoint kT0{std::chrono::hours(1000)};

// Polls `a` (100 B, 1 packet each way) at kT0, then complete dumps without it
// until it is declared lost. Returns the next dump's sequence number.
std::uint64_t poll_until_lost(core::FlowLedger& ledger, const core::FlowSample& a) {
    ledger.dump_begin(1);
    ledger.apply(poll(a, 100, 1, 100, 1), kT0);
    ledger.dump_end(1, true, kT0);
    std::uint64_t seq = 2;
    std::size_t lost = 0;
    for (; lost == 0 && seq < 10 * kLost; ++seq) {
        ledger.dump_begin(seq);
        lost += ledger.dump_end(seq, true, kT0).size();
    }
    CHECK(lost == 1);
    CHECK(seq == 2 + kLost);
    return seq;
}

}  // namespace

TEST_CASE("what a lost flow was credited is remembered for an hour, then forgotten") {
    const core::TimePoint t0 = kT0;
    core::FlowLedger ledger;
    const std::uint64_t seq = poll_until_lost(ledger, flow(1, "100.64.1.1", 1));
    CHECK(ledger.live_flows() == 0);
    CHECK(ledger.lost_remembered() == 1);
    const auto rows = ledger.take_changes(true).upserts;  // checkpointed as lost
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].lost);
    CHECK(rows[0].lost_at == t0);
    ledger.dump_begin(seq);
    ledger.dump_end(seq, true, t0 + core::FlowLedger::kLostMemory - std::chrono::seconds(1));
    CHECK(ledger.lost_remembered() == 1);
    ledger.dump_begin(seq + 1);
    ledger.dump_end(seq + 1, true, t0 + core::FlowLedger::kLostMemory);
    CHECK(ledger.lost_remembered() == 0);
    CHECK(ledger.stats().lost_recovered == 0);
}

TEST_CASE("a lost flow's late DESTROY is counted as recovered and becomes a tombstone") {
    const core::TimePoint t0 = kT0;
    const auto a = flow(1, "100.64.1.1", 1);
    core::FlowLedger ledger;
    poll_until_lost(ledger, a);
    const auto r = ledger.apply(destroy(a, 150, 2, 100, 1), t0 + std::chrono::minutes(20));
    CHECK(r.outcome == LedgerOutcome::Final);
    CHECK(r.orig_delta.bytes == 50);
    CHECK(r.reply_delta.bytes == 0);
    CHECK(ledger.stats().lost_recovered == 1);
    CHECK(ledger.lost_remembered() == 0);
    CHECK(ledger.tombstones() == 1);
}

TEST_CASE("tombstones expire after two more dumps") {
    core::FlowLedger ledger;
    ledger.dump_begin(1);
    ledger.apply(destroy(flow(1, "100.64.1.1", 1), 10, 1, 10, 1));
    CHECK(ledger.tombstones() == 1);
    ledger.dump_end(1, true);
    ledger.dump_begin(2);
    ledger.dump_end(2, true);
    CHECK(ledger.tombstones() == 1);
    ledger.dump_begin(3);
    ledger.dump_end(3, true);
    CHECK(ledger.tombstones() == 0);
}

TEST_CASE("checkpoint changes handed back are written next time") {
    core::FlowLedger ledger;
    const auto a = flow(1, "100.64.1.1", 1);
    const auto b = flow(2, "100.64.1.2", 2);
    ledger.dump_begin(1);
    ledger.apply(poll(a, 10, 1, 10, 1));
    ledger.apply(poll(b, 10, 1, 10, 1));
    ledger.dump_end(1, true);
    auto first = ledger.take_changes(false);
    CHECK(first.upserts.size() == 2);
    ledger.return_changes(first);  // the write failed
    ledger.apply(destroy(b, 20, 2, 20, 2));
    auto second = ledger.take_changes(false);
    CHECK(second.upserts.size() == 1);
    CHECK(second.removals.empty());  // b never had a stored row
    ledger.changes_committed(second);
    CHECK(ledger.take_changes(false).empty());
    auto snap = ledger.take_changes(true);
    CHECK(snap.snapshot);
    CHECK(snap.upserts.size() == 1);
}

namespace {

// The stored checkpoint as a test double: the change sets that committed.
struct Store {
    std::vector<core::CheckpointChanges> committed;
    [[nodiscard]] std::size_t rows() const { return core::replay_checkpoints(committed).size(); }
    bool has(const core::FlowSample& s) const {
        for (const auto& e : core::replay_checkpoints(committed)) {
            if (e.key == core::FlowKey::of(s)) {
                return true;
            }
        }
        return false;
    }
    void flush(core::FlowLedger& ledger, bool snapshot = false) {
        auto c = ledger.take_changes(snapshot);
        committed.push_back(*core::decode_checkpoint(core::encode_checkpoint(c)));
        ledger.changes_committed(c);
    }
};

// `a` is dumped, its row taken for a flush, and then it ends: the COMMIT's
// answer is still on its way. Returns the changes in flight.
core::CheckpointChanges end_while_written(core::FlowLedger& ledger, const core::FlowSample& a) {
    ledger.dump_begin(1);
    ledger.apply(poll(a, 10, 1, 10, 1), kT0);
    ledger.dump_end(1, true, kT0);
    auto in_flight = ledger.take_changes(false);
    ledger.apply(destroy(a, 20, 2, 20, 2), kT0);
    return in_flight;
}

}  // namespace

TEST_CASE("a flow ending while its row is being written leaves the stored checkpoint") {
    core::FlowLedger ledger;
    Store store;
    const auto a = flow(1, "100.64.1.1", 1);
    auto in_flight = end_while_written(ledger, a);
    store.committed.push_back(in_flight);
    ledger.changes_committed(in_flight);
    CHECK(store.has(a));
    store.flush(ledger);
    CHECK_FALSE(store.has(a));
}

TEST_CASE("a tombstone swept while its row is being written still leaves the stored checkpoint") {
    core::FlowLedger ledger;
    Store store;
    auto in_flight = end_while_written(ledger, flow(1, "100.64.1.1", 1));
    for (std::uint64_t seq = 2; seq < 5; ++seq) {  // swept before the COMMIT answered
        ledger.dump_begin(seq);
        ledger.dump_end(seq, true, kT0 + core::FlowLedger::kTombstoneTtl);
    }
    CHECK(ledger.tombstones() == 0);
    store.committed.push_back(in_flight);
    ledger.changes_committed(in_flight);
    CHECK(ledger.pending_removals() == 1);
    store.flush(ledger);
    CHECK(store.rows() == 0);
    CHECK(ledger.pending_removals() == 0);
}

TEST_CASE("a failing flush series keeps the ledger's bookkeeping bounded by live flows") {
    // Ten stored flows, then an outage: every round new flows are dumped and
    // end, a flush is taken and fails. Before the fix every swept flow's key
    // was kept and re-encoded at every attempt for the whole outage.
    core::FlowLedger ledger;
    Store store;
    std::vector<core::FlowSample> old;
    ledger.dump_begin(1);
    for (std::uint32_t i = 0; i < 10; ++i) {
        old.push_back(flow(i, "100.64.1.1", static_cast<std::uint16_t>(i)));
        ledger.apply(poll(old.back(), 10, 1, 10, 1), kT0);
    }
    ledger.dump_end(1, true, kT0);
    store.flush(ledger, true);
    REQUIRE(store.rows() == 10);

    constexpr std::uint32_t kRounds = 200;
    constexpr std::uint32_t kPerRound = 500;
    std::size_t largest_take = 0;
    auto now = kT0;
    for (std::uint32_t round = 0; round < kRounds; ++round) {
        const std::uint64_t seq = 2 + round;
        now += std::chrono::seconds(10);
        ledger.dump_begin(seq);
        std::vector<core::FlowSample> batch;
        for (std::uint32_t i = 0; i < kPerRound; ++i) {
            batch.push_back(flow(1000 + round * kPerRound + i, "100.64.1.2",
                                 static_cast<std::uint16_t>(i), "198.18.0.2", round + 1));
            ledger.apply(poll(batch.back(), 10, 1, 10, 1), now);
        }
        for (std::size_t i = 0; i < old.size(); ++i) {
            ledger.apply(poll(old[i], 10 + round, 1 + round, 10, 1), now);
        }
        ledger.dump_end(seq, true, now);
        auto attempt = ledger.take_changes(false);  // the flush fails...
        for (const auto& s : batch) {
            ledger.apply(destroy(s, 20, 2, 20, 2), now);  // ...while the flows end
        }
        if (round == kRounds / 2) {
            for (std::size_t i = 0; i < 5; ++i) {
                ledger.apply(destroy(old[i], 10 + round, 1 + round, 10, 1), now);
            }
            old.erase(old.begin(), old.begin() + 5);
        }
        largest_take = std::max(largest_take, attempt.upserts.size() + attempt.removals.size());
        ledger.return_changes(attempt);
        CHECK(ledger.pending_removals() <= 5);
        CHECK(ledger.dirty_backlog() <= 2 * (kPerRound + 10) + 1024);
    }
    // One round's flows plus the stored ones: not 200 rounds' worth.
    CHECK(largest_take <= kPerRound + 10 + 5);
    CHECK(ledger.live_flows() == 5);
    CHECK(ledger.tombstones() <= 2 * kPerRound);

    store.flush(ledger);  // the database is back
    CHECK(store.rows() == 5);
    for (const auto& s : old) {
        CHECK(store.has(s));
    }
    CHECK(ledger.pending_removals() == 0);
}

TEST_CASE("without any take (a flush held in doubt), stale dirty keys are compacted") {
    core::FlowLedger ledger;
    auto now = kT0;
    std::size_t largest_table = 0;
    for (std::uint32_t round = 0; round < 200; ++round) {
        now += std::chrono::seconds(10);
        ledger.dump_begin(round + 1);
        for (std::uint32_t i = 0; i < 100; ++i) {
            const auto f = flow(round * 100 + i, "100.64.1.3", static_cast<std::uint16_t>(i),
                                "198.18.0.2", round + 1);
            ledger.apply(poll(f, 10, 1, 10, 1), now);     // dirty...
            ledger.apply(destroy(f, 20, 2, 20, 2), now);  // ...and swept two dumps later
        }
        ledger.dump_end(round + 1, true, now);
        largest_table = std::max(largest_table, ledger.tombstones());
    }
    CHECK(largest_table <= 300);
    CHECK(ledger.dirty_backlog() <= 2 * largest_table + 1024);
}

TEST_CASE(
    "a DESTROY after a restore, a restored spill, a reserve or a dump's sweep credits only the "
    "rest") {
    const auto a = flow(1, "100.64.1.1", 1);
    const core::CheckpointEntry credited{core::FlowKey::of(a), {100, 1}, {40, 1}};
    const auto check_rest = [&](core::FlowLedger& ledger) {
        const auto r = ledger.apply(destroy(a, 150, 2, 100, 2));
        CHECK(r.outcome == LedgerOutcome::Final);
        CHECK(r.orig_delta == core::Counters{50, 1});
        CHECK(r.reply_delta == core::Counters{60, 1});
    };
    SUBCASE("restore") {
        core::FlowLedger ledger;
        ledger.restore({credited}, kT0);
        check_rest(ledger);
    }
    SUBCASE("restore, then reserve") {
        core::FlowLedger ledger;
        ledger.restore({credited}, kT0);
        ledger.reserve(1 << 16);
        check_rest(ledger);
    }
    SUBCASE("a restored spill") {
        core::FlowLedger ledger;
        core::CheckpointChanges pending;
        pending.upserts.push_back(credited);
        ledger.restore_pending(pending, {}, kT0);
        check_rest(ledger);
    }
    auto lost = credited;
    lost.lost = true;
    lost.lost_at = kT0;
    const auto check_recovered = [&](core::FlowLedger& ledger) {
        CHECK(ledger.lost_remembered() == 1);
        check_rest(ledger);
        CHECK(ledger.lost_remembered() == 0);
        CHECK(ledger.stats().lost_recovered == 1);
        CHECK(ledger.stats().lost_flows == 0);
    };
    SUBCASE("restore of a lost row") {
        core::FlowLedger ledger;
        ledger.restore({lost}, kT0 + std::chrono::minutes(59));
        check_recovered(ledger);
    }
    SUBCASE("a restored spill that declared it lost") {
        core::FlowLedger ledger;
        core::CheckpointChanges pending;
        pending.upserts.push_back(lost);
        ledger.restore_pending(pending, {}, kT0);
        check_recovered(ledger);
    }
    SUBCASE("a poll, then dumps that sweep others") {
        core::FlowLedger ledger;
        ledger.reserve(1 << 16);
        ledger.dump_begin(1);
        ledger.apply(poll(a, 100, 1, 40, 1));
        for (std::uint32_t i = 2; i < 2000; ++i) {
            ledger.apply(poll(flow(i, "100.64.1.2", static_cast<std::uint16_t>(i)), 1, 1, 1, 1));
        }
        ledger.dump_end(1, true);
        ledger.dump_begin(2);
        ledger.apply(poll(a, 100, 1, 40, 1));
        ledger.dump_end(2, true);
        check_rest(ledger);
    }
}

namespace {

// The rows the store holds now.
std::vector<core::CheckpointEntry> rows_of(const Store& store) {
    return core::replay_checkpoints(store.committed);
}

// A new run: a fresh ledger restored from what the store holds, at `now`.
std::unique_ptr<core::FlowLedger> restarted(const Store& store, core::TimePoint now) {
    auto ledger = std::make_unique<core::FlowLedger>();
    ledger->restore(rows_of(store), now);
    return ledger;
}

}  // namespace

TEST_CASE("a lost flow's row stays in the checkpoint for its hour, across a restart, then leaves") {
    const auto a = flow(1, "100.64.1.1", 1);
    auto ledger = std::make_unique<core::FlowLedger>();
    Store store;
    poll_until_lost(*ledger, a);  // declared lost at kT0
    store.flush(*ledger);
    auto rows = rows_of(store);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].lost);
    CHECK(rows[0].lost_at == kT0);
    CHECK(rows[0].orig == core::Counters{100, 1});

    const auto restart_at = kT0 + std::chrono::minutes(30);
    ledger = restarted(store, restart_at);
    CHECK(ledger->live_flows() == 0);
    CHECK(ledger->lost_remembered() == 1);
    // Dumps of the new run that do not show it give no second lost verdict.
    std::uint64_t seq = 1;
    for (; seq <= 2 * kLost; ++seq) {
        ledger->dump_begin(seq);
        CHECK(ledger->dump_end(seq, true, restart_at).empty());
    }
    CHECK(ledger->stats().lost_flows == 0);
    store.flush(*ledger);
    CHECK(store.has(a));
    // The hour runs from the verdict (kT0), not from the restart.
    ledger->dump_begin(seq);
    ledger->dump_end(seq, true, kT0 + core::FlowLedger::kLostMemory - std::chrono::seconds(1));
    CHECK(ledger->lost_remembered() == 1);
    ++seq;
    ledger->dump_begin(seq);
    ledger->dump_end(seq, true, kT0 + core::FlowLedger::kLostMemory);
    CHECK(ledger->lost_remembered() == 0);
    const auto changes = ledger->take_changes(false);
    CHECK(changes.upserts.empty());
    CHECK(changes.removals == std::vector<core::FlowKey>{core::FlowKey::of(a)});
    store.committed.push_back(changes);
    ledger->changes_committed(changes);
    CHECK(store.rows() == 0);
    CHECK(ledger->pending_removals() == 0);
    CHECK(ledger->stats().lost_flows == 0);
    CHECK(ledger->stats().lost_recovered == 0);
}

TEST_CASE("after a restart, a dump that sees a lost flow again makes it live, counted once") {
    const auto a = flow(1, "100.64.1.1", 1);
    auto ledger = std::make_unique<core::FlowLedger>();
    Store store;
    poll_until_lost(*ledger, a);  // 100 B, 1 packet each way credited
    store.flush(*ledger);
    const auto now = kT0 + std::chrono::minutes(10);
    ledger = restarted(store, now);
    ledger->dump_begin(1);
    auto r = ledger->apply(poll(a, 150, 2, 100, 1), now);
    CHECK(r.outcome == LedgerOutcome::Progress);
    CHECK(r.orig_delta == core::Counters{50, 1});
    CHECK(r.reply_delta == core::Counters{0, 0});
    ledger->dump_end(1, true, now);
    CHECK(ledger->live_flows() == 1);
    CHECK(ledger->lost_remembered() == 0);
    CHECK(ledger->stats().lost_recovered == 1);
    CHECK(ledger->stats().lost_flows == 0);
    store.flush(*ledger);
    const auto rows = rows_of(store);
    REQUIRE(rows.size() == 1);
    CHECK_FALSE(rows[0].lost);
    CHECK(rows[0].orig == core::Counters{150, 2});
    // Live now: the lost hour no longer sweeps it.
    ledger->dump_begin(2);
    ledger->apply(poll(a, 150, 2, 100, 1), now);
    ledger->dump_end(2, true, kT0 + 2 * core::FlowLedger::kLostMemory);
    CHECK(ledger->live_flows() == 1);
    r = ledger->apply(destroy(a, 170, 3, 100, 1), now);
    CHECK(r.outcome == LedgerOutcome::Final);
    CHECK(r.orig_delta == core::Counters{20, 1});
    CHECK(r.reply_delta == core::Counters{0, 0});
}

TEST_CASE("a stored lost time later than the restore (a clock set back) counts from the restore") {
    const auto a = core::FlowKey::of(flow(1, "100.64.1.1", 1));
    core::FlowLedger ledger;
    ledger.restore({{a, {10, 1}, {10, 1}, true, kT0 + std::chrono::hours(5)}}, kT0);
    CHECK(ledger.lost_remembered() == 1);
    CHECK(ledger.live_flows() == 0);
    ledger.dump_begin(1);
    ledger.dump_end(1, true, kT0 + core::FlowLedger::kLostMemory - std::chrono::seconds(1));
    CHECK(ledger.lost_remembered() == 1);
    ledger.dump_begin(2);
    ledger.dump_end(2, true, kT0 + core::FlowLedger::kLostMemory);
    CHECK(ledger.lost_remembered() == 0);
    CHECK(ledger.pending_removals() == 1);
}

TEST_CASE("a lost verdict or a revival while the row is being written reaches the store") {
    const auto a = flow(1, "100.64.1.1", 1);
    core::FlowLedger ledger;
    Store store;
    ledger.dump_begin(1);
    ledger.apply(poll(a, 100, 1, 100, 1), kT0);
    ledger.dump_end(1, true, kT0);
    auto in_flight = ledger.take_changes(false);  // a live row on its way
    for (std::uint64_t seq = 2; seq < 2 + kLost; ++seq) {
        ledger.dump_begin(seq);
        ledger.dump_end(seq, true, kT0);
    }
    REQUIRE(ledger.lost_remembered() == 1);
    store.committed.push_back(in_flight);
    ledger.changes_committed(in_flight);
    store.flush(ledger);
    REQUIRE(store.rows() == 1);
    CHECK(rows_of(store)[0].lost);

    in_flight = ledger.take_changes(true);  // a lost row on its way...
    ledger.dump_begin(100);
    ledger.apply(poll(a, 120, 2, 100, 1), kT0);  // ...while a dump sees the flow again
    ledger.dump_end(100, true, kT0);
    store.committed.push_back(in_flight);
    ledger.changes_committed(in_flight);
    CHECK(rows_of(store)[0].lost);
    store.flush(ledger);
    REQUIRE(store.rows() == 1);
    CHECK_FALSE(rows_of(store)[0].lost);
    CHECK(rows_of(store)[0].orig == core::Counters{120, 2});
}

TEST_CASE("a restored spill has the last word on a row's lost state") {
    const auto a = flow(1, "100.64.1.1", 1);
    const auto key = core::FlowKey::of(a);
    const core::CheckpointEntry live_row{key, {100, 1}, {100, 1}};
    const core::CheckpointEntry lost_row{key, {100, 1}, {100, 1}, true, kT0};
    core::FlowLedger ledger;
    core::CheckpointChanges spill;
    std::vector<core::FlowKey> tombstones;
    SUBCASE("a live row the last run declared lost") {
        ledger.restore({live_row}, kT0);
        spill.upserts.push_back(lost_row);
        ledger.restore_pending(spill, tombstones, kT0);
        CHECK(ledger.lost_remembered() == 1);
        CHECK(ledger.live_flows() == 0);
    }
    SUBCASE("a lost row the last run saw again") {
        ledger.restore({lost_row}, kT0);
        spill.upserts.push_back(live_row);
        ledger.restore_pending(spill, tombstones, kT0);
        CHECK(ledger.lost_remembered() == 0);
        CHECK(ledger.live_flows() == 1);
    }
    SUBCASE("a lost row whose DESTROY the last run credited") {
        ledger.restore({lost_row}, kT0);
        tombstones.push_back(key);
        ledger.restore_pending(spill, tombstones, kT0);
        CHECK(ledger.lost_remembered() == 0);
        CHECK(ledger.tombstones() == 1);
        CHECK(ledger.apply(destroy(a, 150, 2, 100, 1), kT0).outcome == LedgerOutcome::Duplicate);
        CHECK(ledger.take_changes(false).removals == std::vector<core::FlowKey>{key});
    }
    SUBCASE("a lost row the last run swept after its hour") {
        ledger.restore({lost_row}, kT0);
        spill.removals.push_back(key);
        ledger.restore_pending(spill, tombstones, kT0);
        CHECK(ledger.lost_remembered() == 0);
        CHECK(ledger.pending_removals() == 1);
        CHECK(ledger.take_changes(false).removals == std::vector<core::FlowKey>{key});
    }
    CHECK(ledger.stats().lost_flows == 0);
    CHECK(ledger.stats().lost_recovered == 0);
}
