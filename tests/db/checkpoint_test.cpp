#include <doctest/doctest.h>

#include <algorithm>

#include "../unit/checkpoint_v1.hpp"
#include "core/checkpoint_codec.hpp"
#include "db_fixture.hpp"
#include "store/usage_store.hpp"

using namespace ctquota;
using ctquota::dbtest::flow_entry;
using ctquota::dbtest::ScratchDatabase;

namespace {

core::FlushBatch checkpoint_batch(bool snapshot, std::vector<core::CheckpointEntry> upserts,
                                  std::vector<core::CheckpointEntry> removed = {}) {
    core::FlushBatch b;
    b.checkpoint.snapshot = snapshot;
    b.checkpoint.upserts = std::move(upserts);
    for (const auto& e : removed) {
        b.checkpoint.removals.push_back(e.key);
    }
    return b;
}

// (flow id, orig bytes, reply bytes), sorted, for comparing whole ledgers.
std::vector<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t>> summary(
    const std::vector<core::CheckpointEntry>& entries) {
    std::vector<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t>> out;
    for (const auto& e : entries) {
        out.emplace_back(e.key.id, e.orig.bytes, e.reply.bytes);
    }
    std::sort(out.begin(), out.end());
    return out;
}

using Summary = std::vector<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t>>;

}  // namespace

TEST_CASE("checkpoint: snapshot + deltas round-trip; a new snapshot compacts the log") {
    ScratchDatabase scratch;
    store::UsageStore gw1(scratch.db(), "gw-1");
    store::UsageStore gw2(scratch.db(), "gw-2");
    CHECK(gw1.load_checkpoint().empty());

    const auto a = flow_entry(1, 10, 20), b = flow_entry(2, 30, 40), c = flow_entry(3, 50, 60);
    gw1.flush(checkpoint_batch(true, {a, b}));
    const auto snapshot_bytes = gw1.last_snapshot_bytes();
    CHECK(snapshot_bytes ==
          core::encode_checkpoint(checkpoint_batch(true, {a, b}).checkpoint).size());
    CHECK(gw1.checkpoint_bytes_since_snapshot() == 0);
    gw1.flush(checkpoint_batch(false, {c}, {a}));
    gw1.flush(checkpoint_batch(false, {flow_entry(2, 31, 41)}));
    CHECK(gw1.checkpoint_bytes_since_snapshot() > 0);
    gw2.flush(checkpoint_batch(true, {flow_entry(9, 1, 1)}));
    gw2.flush(checkpoint_batch(false, {}, {flow_entry(9, 1, 1)}));

    CHECK(scratch.scalar("SELECT count(*) FROM ledger_checkpoint WHERE gateway_id = 'gw-1'") == 3);
    CHECK(summary(gw1.load_checkpoint()) == Summary{{2, 31, 41}, {3, 50, 60}});
    CHECK(gw2.load_checkpoint().empty());

    // A restarted daemon's store learns the sizes from what it loads.
    store::UsageStore restarted(scratch.db(), "gw-1");
    CHECK(summary(restarted.load_checkpoint()) == Summary{{2, 31, 41}, {3, 50, 60}});
    CHECK(restarted.last_snapshot_bytes() == snapshot_bytes);
    CHECK(restarted.checkpoint_bytes_since_snapshot() == gw1.checkpoint_bytes_since_snapshot());

    // Compaction: the snapshot replaces gw-1's older rows, and only gw-1's.
    gw1.flush(checkpoint_batch(true, {flow_entry(3, 55, 66), flow_entry(4, 1, 2)}));
    CHECK(scratch.scalar("SELECT count(*) FROM ledger_checkpoint WHERE gateway_id = 'gw-1'") == 1);
    CHECK(scratch.scalar("SELECT count(*) FROM ledger_checkpoint WHERE gateway_id = 'gw-1' AND "
                         "is_snapshot") == 1);
    CHECK(scratch.scalar("SELECT count(*) FROM ledger_checkpoint WHERE gateway_id = 'gw-2'") == 2);
    CHECK(gw1.checkpoint_bytes_since_snapshot() == 0);
    CHECK(summary(gw1.load_checkpoint()) == Summary{{3, 55, 66}, {4, 1, 2}});

    // An empty snapshot is a real state: nothing live.
    gw1.flush(checkpoint_batch(true, {}));
    CHECK(gw1.load_checkpoint().empty());
    CHECK(scratch.scalar("SELECT count(*) FROM ledger_checkpoint WHERE gateway_id = 'gw-1'") == 1);
}

TEST_CASE("checkpoint: many flows in one row, exactly") {
    ScratchDatabase scratch;
    store::UsageStore gw(scratch.db(), "gw-1");
    std::vector<core::CheckpointEntry> flows;
    for (std::uint32_t i = 0; i < 50'000; ++i) {
        flows.push_back(flow_entry(i, 1'000'000'000'000ull + i, i));
    }
    gw.flush(checkpoint_batch(true, flows));
    CHECK(scratch.count("ledger_checkpoint") == 1);
    const auto loaded = gw.load_checkpoint();
    REQUIRE(loaded.size() == flows.size());
    CHECK(summary(loaded) == summary(flows));
    // Full keys survive too (tuple, zone, start timestamp), not just the ids.
    auto sorted = loaded;
    std::sort(sorted.begin(), sorted.end(),
              [](const auto& x, const auto& y) { return x.key.id < y.key.id; });
    CHECK(sorted[777].key == flows[777].key);
    CHECK(sorted[777].orig == flows[777].orig);
}

TEST_CASE("checkpoint: a corrupt row refuses to load, naming the gateway") {
    ScratchDatabase scratch;
    store::UsageStore gw(scratch.db(), "gw-1");
    gw.flush(checkpoint_batch(true, {flow_entry(1, 1, 1)}));
    gw.flush(checkpoint_batch(false, {flow_entry(2, 2, 2)}));
    scratch.exec(
        "UPDATE ledger_checkpoint SET data = substring(data FROM 1 FOR length(data) - 1) "
        "WHERE NOT is_snapshot");
    CHECK_THROWS_WITH_AS(gw.load_checkpoint(), doctest::Contains("'gw-1' is corrupt"),
                         store::DatabaseError);
    // A row whose flag disagrees with its blob is corrupt as well.
    scratch.exec(
        "DELETE FROM ledger_checkpoint WHERE NOT is_snapshot;"
        "UPDATE ledger_checkpoint SET is_snapshot = false");
    CHECK_THROWS_AS(gw.load_checkpoint(), store::DatabaseError);
}

TEST_CASE("checkpoint: lost rows keep their lost time; version 1 rows stored earlier still load") {
    ScratchDatabase scratch;
    store::UsageStore gw(scratch.db(), "gw-1");
    // A snapshot written by a daemon before version 2, stored as it stored it.
    const auto a = flow_entry(1, 10, 20), b = flow_entry(2, 30, 40);
    std::string hex;
    for (const unsigned char byte : test::checkpoint_v1_blob(true, {a, b})) {
        static constexpr char kDigits[] = "0123456789abcdef";
        hex += kDigits[byte >> 4];
        hex += kDigits[byte & 0xf];
    }
    scratch.exec(
        "INSERT INTO ledger_checkpoint (gateway_id, is_snapshot, data) VALUES ('gw-1', "
        "true, '\\x" +
        hex + "'::bytea)");
    // The upgraded daemon declares b lost and stores the change as a delta.
    auto b_lost = b;
    b_lost.lost = true;
    b_lost.lost_at = core::TimePoint{std::chrono::nanoseconds{1'700'000'000'123'456'789}};
    gw.flush(checkpoint_batch(false, {b_lost}));

    store::UsageStore restarted(scratch.db(), "gw-1");
    auto loaded = restarted.load_checkpoint();
    std::sort(loaded.begin(), loaded.end(),
              [](const auto& x, const auto& y) { return x.key.id < y.key.id; });
    REQUIRE(loaded.size() == 2);
    CHECK(loaded[0].key == a.key);
    CHECK(loaded[0].orig == a.orig);
    CHECK_FALSE(loaded[0].lost);
    CHECK(loaded[1].key == b.key);
    CHECK(loaded[1].reply == b.reply);
    CHECK(loaded[1].lost);
    CHECK(loaded[1].lost_at == b_lost.lost_at);
    // A snapshot (version 2) keeps the lost row as it is.
    restarted.flush(checkpoint_batch(true, loaded));
    CHECK(scratch.scalar("SELECT count(*) FROM ledger_checkpoint WHERE gateway_id = 'gw-1'") == 1);
    const auto again = restarted.load_checkpoint();
    REQUIRE(again.size() == 2);
    for (const auto& e : again) {
        CHECK(e.lost == (e.key == b.key));
    }
}
