// TombstoneSet: every key is kept at least `min_dumps` dump ends and `ttl`
// after it was added, and forgotten within about twice that.

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/tombstone_set.hpp"
#include "test_helpers.hpp"

using namespace ctquota;
using namespace ctquota::test;

namespace {

const core::TimePoint kT0{std::chrono::hours(1000)};
constexpr std::chrono::seconds kTtl{10};

core::FlowKey key(std::uint32_t n) {
    return core::FlowKey::of(flow(n, "100.64.1.1", static_cast<std::uint16_t>(n)));
}

}  // namespace

TEST_CASE("tombstone set: a key is kept two dumps and the time-to-live, then forgotten") {
    core::TombstoneSet set(2, kTtl);
    set.insert(key(1), 1, kT0);
    CHECK(set.contains(key(1)));
    CHECK_FALSE(set.contains(key(2)));
    set.rotate(1, kT0);
    set.rotate(2, kT0 + kTtl);  // old enough, but one dump too few
    CHECK(set.contains(key(1)));
    set.rotate(3, kT0 + kTtl - std::chrono::seconds(1));  // two dumps, too young
    CHECK(set.contains(key(1)));
    set.rotate(4, kT0 + kTtl);
    CHECK_FALSE(set.contains(key(1)));
    CHECK(set.size() == 0);
}

TEST_CASE("tombstone set: a generation goes only when its newest key may go") {
    core::TombstoneSet set(2, kTtl);
    set.insert(key(1), 1, kT0);
    set.insert(key(2), 1, kT0 + std::chrono::seconds(5));  // same generation, younger
    set.rotate(1, kT0 + std::chrono::seconds(5));
    set.insert(key(3), 2, kT0 + std::chrono::seconds(6));  // the next generation
    set.rotate(3, kT0 + kTtl);  // key 1 may go, key 2 not yet: the generation stays
    CHECK(set.contains(key(1)));
    CHECK(set.contains(key(2)));
    set.rotate(4, kT0 + kTtl + std::chrono::seconds(5));
    CHECK_FALSE(set.contains(key(1)));
    CHECK_FALSE(set.contains(key(2)));
    CHECK(set.contains(key(3)));  // now the older generation
    CHECK(set.size() == 1);
    set.rotate(5, kT0 + kTtl + std::chrono::seconds(6));
    CHECK_FALSE(set.contains(key(3)));
}

TEST_CASE("tombstone set: a key added twice is kept once, and listed once") {
    core::TombstoneSet set(2, kTtl);
    set.insert(key(1), 1, kT0);
    set.rotate(1, kT0);
    set.insert(key(1), 1, kT0);  // in the older generation already
    set.insert(key(2), 1, kT0);
    set.insert(key(2), 1, kT0);
    CHECK(set.size() == 2);
    std::vector<core::FlowKey> keys;
    set.append_keys(keys);
    REQUIRE(keys.size() == 2);
    CHECK(std::count(keys.begin(), keys.end(), key(1)) == 1);
    CHECK(std::count(keys.begin(), keys.end(), key(2)) == 1);
}

TEST_CASE("tombstone set: under steady churn every key lives its minimum and at most twice") {
    // A dump a second, keys added at random moments in between.
    core::TombstoneSet set(2, kTtl);
    struct Added {
        core::FlowKey key;
        std::uint64_t dump;
        core::TimePoint at;
    };
    std::vector<Added> added;
    std::mt19937 rng(15);
    std::uint32_t next = 0;
    for (std::uint64_t seq = 1; seq <= 120; ++seq) {
        const core::TimePoint dump_start = kT0 + std::chrono::seconds(seq);
        for (int i = 0; i < 20; ++i) {
            const auto at = dump_start + std::chrono::milliseconds(rng() % 1000);
            added.push_back({key(next++), seq, at});
            set.insert(added.back().key, seq, at);
        }
        const core::TimePoint now = dump_start + std::chrono::seconds(1);
        set.rotate(seq, now);
        for (const auto& a : added) {
            const bool young = a.dump + 2 > seq || now - a.at < kTtl;
            const bool old = now - a.at > 2 * kTtl + std::chrono::seconds(3);
            if (young) {
                REQUIRE(set.contains(a.key));
            } else if (old) {
                REQUIRE_FALSE(set.contains(a.key));
            }
        }
    }
    CHECK(set.size() <= 20 * (2 * 10 + 4));
}

TEST_CASE("tombstone set: past its reservation it grows and keeps every key, in both generations") {
    core::TombstoneSet set(2, kTtl);
    set.reserve(64);  // the index starts at its minimum: 100k keys re-index it many times
    constexpr std::uint32_t kKeys = 100'000;
    for (std::uint32_t n = 0; n < kKeys; ++n) {
        set.insert(key(n), 1, kT0);
    }
    set.rotate(1, kT0);  // now the older generation, which a younger one of new keys joins
    for (std::uint32_t n = kKeys; n < 2 * kKeys; ++n) {
        set.insert(key(n), 2, kT0 + std::chrono::seconds(1));
    }
    CHECK(set.size() == 2 * kKeys);
    std::uint32_t missing = 0;
    for (std::uint32_t n = 0; n < 2 * kKeys; ++n) {
        missing += set.contains(key(n)) ? 0 : 1;
    }
    CHECK(missing == 0);
    std::uint32_t strangers = 0;
    for (std::uint32_t n = 2 * kKeys; n < 3 * kKeys; ++n) {
        strangers += set.contains(key(n)) ? 1 : 0;
    }
    CHECK(strangers == 0);
    // The older generation goes whole; its memory serves the next one.
    set.rotate(4, kT0 + kTtl + std::chrono::seconds(1));
    CHECK(set.size() == kKeys);
    CHECK_FALSE(set.contains(key(0)));
    CHECK(set.contains(key(kKeys)));
    set.insert(key(0), 4, kT0 + kTtl + std::chrono::seconds(1));
    CHECK(set.contains(key(0)));
    CHECK(set.size() == kKeys + 1);
}

TEST_CASE("tombstone set: keys of one id and tuple that differ in their start are told apart") {
    // A reused id: half of 5000 such keys kept, the other half never.
    core::TombstoneSet set(2, kTtl);
    std::vector<core::FlowKey> keys;
    for (std::uint64_t start = 1; start <= 5000; ++start) {
        core::FlowKey k = key(7);
        k.start_ns = start;
        keys.push_back(k);
        if (start % 2 == 1) {
            set.insert(k, 1, kT0);
        }
    }
    for (std::size_t i = 0; i < keys.size(); ++i) {
        REQUIRE(set.contains(keys[i]) == (i % 2 == 0));
    }
    // A second insert of a kept key changes nothing.
    set.insert(keys[0], 1, kT0);
    CHECK(set.size() == 2500);
}
