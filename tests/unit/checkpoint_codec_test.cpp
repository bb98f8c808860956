#include <doctest/doctest.h>

#include "checkpoint_v1.hpp"
#include "core/checkpoint_codec.hpp"
#include "test_helpers.hpp"

using namespace ctquota;
using namespace ctquota::test;

TEST_CASE("checkpoint blobs round-trip, IPv4 and IPv6") {
    core::CheckpointChanges c;
    c.snapshot = true;
    c.upserts.push_back({core::FlowKey::of(flow(1, "100.64.1.1", 10)), {100, 2}, {300, 4}});
    c.upserts.push_back({core::FlowKey::of(flow(2, "2001:db8:0:1::1", 11, "2001:db8:ffff::2")),
                         {1ull << 40, 7},
                         {5, 1}});
    c.removals.push_back(core::FlowKey::of(flow(3, "100.64.1.3", 12)));
    auto decoded = core::decode_checkpoint(core::encode_checkpoint(c));
    REQUIRE(decoded.has_value());
    CHECK(decoded->snapshot);
    REQUIRE(decoded->upserts.size() == 2);
    CHECK(decoded->upserts[1].key == c.upserts[1].key);
    CHECK(decoded->upserts[1].orig == c.upserts[1].orig);
    CHECK(decoded->removals == c.removals);
}

TEST_CASE("corrupt checkpoint blobs are rejected, not half-read") {
    core::CheckpointChanges c;
    c.upserts.push_back({core::FlowKey::of(flow(1, "100.64.1.1", 10)), {1, 1}, {1, 1}});
    const auto blob = core::encode_checkpoint(c);
    CHECK_FALSE(core::decode_checkpoint(blob.substr(0, blob.size() - 1)).has_value());
    CHECK_FALSE(core::decode_checkpoint(blob + "x").has_value());
    CHECK_FALSE(core::decode_checkpoint("").has_value());
    auto bad_magic = blob;
    bad_magic[0] = 'X';
    CHECK_FALSE(core::decode_checkpoint(bad_magic).has_value());
}

TEST_CASE("replay: a snapshot resets, later deltas apply in order") {
    const auto a = core::FlowKey::of(flow(1, "100.64.1.1", 10));
    const auto b = core::FlowKey::of(flow(2, "100.64.1.2", 10));
    std::vector<core::CheckpointChanges> log(3);
    log[0].upserts = {{a, {1, 1}, {1, 1}}};  // superseded by the snapshot
    log[1].snapshot = true;
    log[1].upserts = {{b, {5, 1}, {5, 1}}};
    log[2].upserts = {{a, {9, 1}, {9, 1}}};
    log[2].removals = {b};
    auto state = core::replay_checkpoints(log);
    REQUIRE(state.size() == 1);
    CHECK(state[0].key == a);
    CHECK(state[0].orig.bytes == 9);
}

TEST_CASE("checkpoint blobs carry a lost flow's state and the time it was declared lost") {
    const core::TimePoint lost_at{std::chrono::nanoseconds{1'700'000'000'123'456'789}};
    core::CheckpointChanges c;
    c.upserts.push_back({core::FlowKey::of(flow(1, "100.64.1.1", 10)), {100, 2}, {300, 4}});
    c.upserts.push_back({core::FlowKey::of(flow(2, "2001:db8:0:1::1", 11, "2001:db8:ffff::2")),
                         {7, 1},
                         {9, 1},
                         true,
                         lost_at});
    const auto blob = core::encode_checkpoint(c);
    CHECK(static_cast<unsigned char>(blob[4]) == 2);  // the version
    auto decoded = core::decode_checkpoint(blob);
    REQUIRE(decoded.has_value());
    REQUIRE(decoded->upserts.size() == 2);
    CHECK_FALSE(decoded->upserts[0].lost);
    CHECK(decoded->upserts[1].lost);
    CHECK(decoded->upserts[1].lost_at == lost_at);
    CHECK(decoded->upserts[1].key == c.upserts[1].key);
    CHECK(decoded->upserts[1].reply == core::Counters{9, 1});
    // The lost flag is 0 or 1; anything else is not ours.
    auto bad_flag = blob;
    bad_flag[bad_flag.size() - 9] = 2;
    CHECK_FALSE(core::decode_checkpoint(bad_flag).has_value());
    auto unknown_version = blob;
    unknown_version[4] = 3;
    CHECK_FALSE(core::decode_checkpoint(unknown_version).has_value());
}

TEST_CASE("version 1 blobs, still stored in databases, decode as rows of live flows") {
    const core::CheckpointEntry a{core::FlowKey::of(flow(1, "100.64.1.1", 10)), {100, 2}, {300, 4}};
    const core::CheckpointEntry b{
        core::FlowKey::of(flow(2, "2001:db8:0:1::1", 11, "2001:db8:ffff::2")),
        {1ull << 40, 7},
        {5, 1}};
    const auto removed = core::FlowKey::of(flow(3, "100.64.1.3", 12));
    const auto blob = checkpoint_v1_blob(true, {a, b}, {removed});
    auto decoded = core::decode_checkpoint(blob);
    REQUIRE(decoded.has_value());
    CHECK(decoded->snapshot);
    REQUIRE(decoded->upserts.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& want = i == 0 ? a : b;
        CHECK(decoded->upserts[i].key == want.key);
        CHECK(decoded->upserts[i].orig == want.orig);
        CHECK(decoded->upserts[i].reply == want.reply);
        CHECK_FALSE(decoded->upserts[i].lost);
    }
    CHECK(decoded->removals == std::vector<core::FlowKey>{removed});
    CHECK_FALSE(core::decode_checkpoint(blob.substr(0, blob.size() - 1)).has_value());

    // A version 1 snapshot followed by version 2 deltas (a daemon upgraded in place).
    core::CheckpointChanges delta;
    delta.upserts.push_back(
        {a.key, {150, 3}, {300, 4}, true, core::TimePoint{std::chrono::hours(9)}});
    delta.removals.push_back(b.key);
    const auto state = core::replay_checkpoints(
        {*decoded, *core::decode_checkpoint(core::encode_checkpoint(delta))});
    REQUIRE(state.size() == 1);
    CHECK(state[0].key == a.key);
    CHECK(state[0].orig == core::Counters{150, 3});
    CHECK(state[0].lost);
    CHECK(state[0].lost_at == core::TimePoint{std::chrono::hours(9)});
}
