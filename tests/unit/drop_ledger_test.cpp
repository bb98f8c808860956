// Billing what was delivered: the ledger's arithmetic with the kernel's
// drops per flow (core::FlowLedger + core::DropTable), and the BPF map's
// records converted to core keys (drops/drop_record).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/checkpoint_codec.hpp"
#include "core/drop_table.hpp"
#include "core/flow_ledger.hpp"
#include "drops/drop_record.hpp"
#include "test_helpers.hpp"

using namespace ctquota;
using namespace ctquota::test;

namespace {

// A sample with what the kernel had dropped of its flow when it was applied,
// or a restart (kill -9: only the stored checkpoint survives).
struct Step {
    bool restart = false;
    core::FlowSample sample{};
    core::DroppedCounters dropped{};
};

Step at(const core::FlowSample& s, std::uint64_t orig_bytes, std::uint64_t orig_packets,
        std::uint64_t reply_bytes = 0, std::uint64_t reply_packets = 0) {
    return Step{false, s, {{orig_bytes, orig_packets}, {reply_bytes, reply_packets}}};
}
Step at(const core::FlowSample& s) {
    return Step{false, s, {}};
}
Step restart() {
    return Step{true, {}, {}};
}

struct Credited {
    core::Counters orig;
    core::Counters reply;
};

Credited run(const std::vector<Step>& steps) {
    auto ledger = std::make_unique<core::FlowLedger>();
    std::vector<core::CheckpointChanges> stored;
    Credited out;
    for (const auto& step : steps) {
        if (step.restart) {
            stored.push_back(
                *core::decode_checkpoint(core::encode_checkpoint(ledger->take_changes(false))));
            ledger = std::make_unique<core::FlowLedger>();
            ledger->restore(core::replay_checkpoints(stored), core::TimePoint{});
            continue;
        }
        const bool none = step.dropped == core::DroppedCounters{};
        const auto r =
            ledger->apply(step.sample, core::TimePoint{}, none ? nullptr : &step.dropped);
        out.orig += r.orig_delta;
        out.reply += r.reply_delta;
    }
    return out;
}

struct Case {
    std::string name;
    std::vector<Step> steps;
    Credited expected;
};

}  // namespace

TEST_CASE("a flow is credited what was delivered: counted less dropped") {
    const auto a = flow(7, "100.64.1.1", 4000);
    const std::vector<Case> cases = {
        {"no drops: the counters",
         {at(poll(a, 1000, 10, 5000, 5)), at(destroy(a, 1500, 15, 9000, 9))},
         {{1500, 15}, {9000, 9}}},
        {"drops in both directions, seen by a poll and the DESTROY",
         {at(poll(a, 1000, 10, 5000, 5), 200, 2, 1500, 1),
          at(destroy(a, 1500, 15, 9000, 9), 300, 3, 3000, 2)},
         {{1200, 12}, {6000, 7}}},
        {"a DESTROY of a flow no dump saw",
         {at(destroy(a, 1500, 15, 9000, 9), 300, 3, 3000, 2)},
         {{1200, 12}, {6000, 7}}},
        {"a drop read after the dump that counted it holds the next delta back",
         {at(poll(a, 1000, 10, 0, 0)), at(poll(a, 1000, 10, 0, 0), 300, 3),
          at(poll(a, 1500, 15, 0, 0), 300, 3), at(destroy(a, 1500, 15, 0, 0), 300, 3)},
         {{1200, 12}, {}}},
        {"drops read later than the counts (more dropped than counted then): nothing, never less",
         {at(poll(a, 100, 1, 0, 0), 300, 3), at(destroy(a, 1000, 10, 0, 0), 300, 3)},
         {{700, 7}, {}}},
        {"billing never goes down: a packet credited by a dump and dropped after stays billed",
         {at(poll(a, 1000, 10, 0, 0)), at(destroy(a, 1000, 10, 0, 0), 400, 4)},
         {{1000, 10}, {}}},
        {"kill -9: the checkpoint holds what was credited, the kernel's drops survive",
         {at(poll(a, 1000, 10, 0, 0), 200, 2), restart(), at(poll(a, 2000, 20, 0, 0), 500, 5),
          restart(), at(destroy(a, 2500, 25, 0, 0), 600, 6)},
         {{1900, 19}, {}}},
        {"a counter reset is judged on the raw counters, not on what was credited",
         // 500 < 1000 counted before, though above the 400 credited; after
         // the reset only the drops from then on are taken off.
         {at(poll(a, 1000, 10, 0, 0), 600, 6), at(poll(a, 500, 5, 0, 0), 600, 6),
          at(destroy(a, 800, 8, 0, 0), 700, 7)},
         {{1100, 11}, {}}},
        {"a resent DESTROY credits nothing, drops or not",
         {at(destroy(a, 1000, 10, 0, 0), 100, 1), at(destroy(a, 1000, 10, 0, 0), 100, 1)},
         {{900, 9}, {}}},
        {"drops appearing on a flow credited without any",
         {at(poll(a, 1000, 10, 0, 0)), at(poll(a, 3000, 30, 0, 0)),
          at(destroy(a, 4000, 40, 0, 0), 1000, 10)},
         {{3000, 30}, {}}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const auto got = run(c.steps);
        CHECK(got.orig == c.expected.orig);
        CHECK(got.reply == c.expected.reply);
    }
}

TEST_CASE("drop table: the kernel's map mirrored, used flows erased, orphans purged") {
    core::DropTable table;
    const auto a = flow(7, "100.64.1.1", 4000);
    const auto b = flow(9, "100.64.1.2", 4001);
    const auto key_a = core::DropTable::key_of(a);
    const auto key_b = core::DropTable::key_of(b);
    CHECK(key_a.id == 0);  // the kernel cannot know conntrack's id
    CHECK_FALSE(table.find(a));

    table.dump_begin(1);
    table.refresh({{key_a, {{100, 1}, {0, 0}}}, {key_b, {{0, 0}, {50, 1}}}});
    REQUIRE(table.find(a));
    CHECK(table.find(a)->orig.bytes == 100);
    auto other_id = a;
    other_id.id = 12345;  // the same conntrack entry seen with its id
    CHECK(table.find(other_id));
    auto other_start = a;
    other_start.start_ns = 2000;  // a reused tuple is another flow
    CHECK_FALSE(table.find(other_start));

    SUBCASE("drops matched by the packet's tuple (start 0) add to the flow's own") {
        const core::FlowKey tuple_only{0, 0, a.orig, 0};
        table.refresh({{key_a, {{100, 1}, {0, 0}}}, {tuple_only, {{0, 0}, {3000, 2}}}});
        const auto d = table.find(a);
        REQUIRE(d);
        CHECK(d->orig == core::Counters{100, 1});
        CHECK(d->reply == core::Counters{3000, 2});
        table.finish(a);
        CHECK(table.take_erasures().size() == 2);
        CHECK(table.empty());
    }
    SUBCASE("a refresh replaces the numbers; a vanished entry is counted") {
        table.refresh({{key_a, {{300, 3}, {0, 0}}}});
        CHECK(table.find(a)->orig.bytes == 300);
        CHECK_FALSE(table.find(b));
        CHECK(table.stats().vanished_flows == 1);
    }
    SUBCASE("a finished flow is erased here and handed to the kernel once") {
        table.finish(a);
        CHECK_FALSE(table.find(a));
        const auto erase = table.take_erasures();
        REQUIRE(erase.size() == 1);
        CHECK(erase[0] == key_a);
        CHECK(table.take_erasures().empty());
    }
    SUBCASE("an entry no sample asked for in two complete dumps is an orphan") {
        table.dump_end(1, true);  // it appeared during dump 1: not judged on it
        for (std::uint64_t seq = 2; seq <= 3; ++seq) {
            table.dump_begin(seq);
            CHECK(table.find(a));  // a's flow is live: every dump shows it
            table.dump_end(seq, true);
        }
        CHECK(table.find(a));
        CHECK_FALSE(table.find(b));
        CHECK(table.stats().unapplied_flows == 1);
        CHECK(table.stats().unapplied_bytes == 50);
        const auto erase = table.take_erasures();
        REQUIRE(erase.size() == 1);
        CHECK(erase[0] == key_b);
    }
    SUBCASE("incomplete dumps judge nobody") {
        for (std::uint64_t seq = 2; seq <= 5; ++seq) {
            table.dump_begin(seq);
            table.dump_end(seq, false);
        }
        CHECK(table.size() == 2);
    }
}

TEST_CASE("drop records: the kernel's tuple bytes read as ctnetlink's") {
    ctq_drop_key k{};
    k.family = AF_INET;
    k.l4proto = 1;  // ICMP echo: id in sport, type << 8 | code in dport
    k.zone = 3;
    const unsigned char src[4] = {100, 64, 1, 1};
    const unsigned char dst[4] = {198, 18, 0, 2};
    std::memcpy(k.src, src, 4);
    std::memcpy(k.dst, dst, 4);
    k.sport = htons(0x1234);
    const unsigned char echo[2] = {8, 0};
    std::memcpy(&k.dport, echo, 2);
    k.start_ns = 42;
    const auto key = drops::flow_key_of(k);
    REQUIRE(key);
    CHECK(key->orig.src == ip("100.64.1.1"));
    CHECK(key->orig.dst == ip("198.18.0.2"));
    CHECK(key->orig.src_port == 0x1234);
    CHECK(key->orig.dst_port == 0x0800);
    CHECK(key->zone == 3);
    CHECK(key->start_ns == 42);
    CHECK(key->id == 0);
    const auto back = drops::kernel_key_of(*key);
    CHECK(std::memcmp(&back, &k, sizeof k) == 0);

    ctq_drop_key v6{};
    v6.family = AF_INET6;
    v6.l4proto = 6;
    const auto a6 = ip("2001:db8:42::7");
    std::memcpy(v6.src, a6.bytes.data(), 16);
    v6.sport = htons(443);
    const auto key6 = drops::flow_key_of(v6);
    REQUIRE(key6);
    CHECK(key6->orig.src == a6);
    CHECK(key6->orig.src_port == 443);
    const auto back6 = drops::kernel_key_of(*key6);
    CHECK(std::memcmp(&back6, &v6, sizeof v6) == 0);

    ctq_drop_key other{};
    other.family = 7;
    CHECK_FALSE(drops::flow_key_of(other));

    const ctq_drop_value value{{10, 20}, {1, 2}};
    const auto d = drops::dropped_of(value);
    CHECK(d.orig == core::Counters{10, 1});
    CHECK(d.reply == core::Counters{20, 2});
}
