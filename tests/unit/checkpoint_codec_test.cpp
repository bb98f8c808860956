#include <doctest/doctest.h>

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
