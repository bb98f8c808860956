#include <doctest/doctest.h>

#include "core/quota_lease.hpp"

using namespace ctquota::core;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;
constexpr std::uint64_t GiB = 1024 * MiB;
const TimePoint kNow = TimePoint{} + 1'700'000'000s;

LeaseRequest request(std::uint64_t block_limit, std::uint64_t own_counted,
                     std::optional<std::uint64_t> own_ceiling = std::nullopt) {
    LeaseRequest r;
    r.block_limit = block_limit;
    r.own = GatewayShare{own_counted, own_ceiling};
    r.own_expires = kNow + 25s;
    r.now = kNow;
    return r;
}

// The invariant every grant keeps: what all gateways may count <= the block limit.
std::uint64_t committed_after(const LeaseRequest& r, const LeaseDecision& d) {
    std::uint64_t sum = d.ceiling;
    for (const auto& g : r.others) {
        sum += std::max(g.counted_bytes, g.ceiling.value_or(0));
    }
    return sum;
}

}  // namespace

TEST_CASE("slice size: seconds of the rate, clamped between the minimum and left / gateways") {
    const LeaseSettings s;  // 64 KiB, 3 s
    struct Row {
        const char* what;
        std::uint64_t rate, left;
        std::size_t sharing, alive;
        std::uint64_t slice;
    };
    const Row rows[] = {
        {"no rate yet, one gateway: all that is left (as before leases)", 0, 100 * MiB, 1, 1,
         100 * MiB},
        {"no rate yet, four gateways alive: a quarter", 0, 100 * MiB, 1, 4, 25 * MiB},
        {"no rate yet, little left: the minimum", 0, 100 * KiB, 1, 4, 64 * KiB},
        {"1 MiB/s: 3 s of it", MiB, 100 * MiB, 1, 1, 3 * MiB},
        {"slow: the minimum", KiB, 100 * MiB, 1, 1, 64 * KiB},
        {"fast, little left: left", 100 * MiB, 10 * MiB, 1, 1, 10 * MiB},
        {"fast, two gateways: half of what is left", 100 * MiB, 10 * MiB, 2, 2, 5 * MiB},
        {"almost nothing left: still the minimum (the grant caps it)", MiB, 10 * KiB, 2, 2,
         64 * KiB},
        {"zero gateways is one", MiB, 100 * MiB, 0, 0, 3 * MiB},
        {"absurd rate saturates", UINT64_MAX, UINT64_MAX, 1, 1, UINT64_MAX},
    };
    for (const auto& row : rows) {
        CAPTURE(row.what);
        CHECK(slice_bytes(s, row.rate, row.left, row.sharing, row.alive) == row.slice);
    }
}

TEST_CASE("counted bytes of one gateway follow the plan's directions") {
    CHECK(counted_of(CountedDirections::Both, 3, 4) == 7);
    CHECK(counted_of(CountedDirections::Down, 3, 4) == 4);
    CHECK(counted_of(CountedDirections::Up, 3, 4) == 3);
    CHECK(counted_of(CountedDirections::Both, UINT64_MAX, 4) == UINT64_MAX);
}

TEST_CASE("leases: a first grant is one slice past what the gateway counted") {
    const LeaseSettings s;
    auto r = request(100 * MiB, 10 * MiB);
    r.rate_bytes_per_second = MiB;
    const auto d = decide_lease(s, r);
    CHECK(d.action == LeaseAction::Grant);
    CHECK(d.ceiling == 13 * MiB);
    CHECK(d.expires_at == kNow + 30s);
    CHECK(d.holds_lease());
}

TEST_CASE("leases: two gateways are never granted more than what is left") {
    const LeaseSettings s;
    struct Row {
        const char* what;
        std::uint64_t own_counted;
        std::vector<GatewayShare> others;
        LeaseAction action;
        std::uint64_t ceiling;
    };
    const std::uint64_t limit = 10 * MiB;
    const Row rows[] = {
        {"the other holds most: the rest",
         2 * MiB,
         {{3 * MiB, 7 * MiB}},
         LeaseAction::Grant,
         3 * MiB},
        {"the other's usage past its lease counts as its usage",
         2 * MiB,
         {{8 * MiB, 7 * MiB}},
         LeaseAction::Denied,
         2 * MiB},
        {"an expired lease (no ceiling) is only its usage",
         2 * MiB,
         {{3 * MiB, std::nullopt}},
         LeaseAction::Grant,
         7 * MiB},
        {"nothing left at all", 5 * MiB, {{5 * MiB, std::nullopt}}, LeaseAction::Denied, 5 * MiB},
        {"three gateways share",
         1 * MiB,
         {{1 * MiB, 4 * MiB}, {1 * MiB, 4 * MiB}},
         LeaseAction::Grant,
         2 * MiB},
    };
    for (const auto& row : rows) {
        CAPTURE(row.what);
        auto r = request(limit, row.own_counted);
        r.others = row.others;
        r.rate_bytes_per_second = 100 * MiB;  // wants far more than is left
        const auto d = decide_lease(s, r);
        CHECK(d.action == row.action);
        CHECK(d.ceiling == row.ceiling);
        if (d.action != LeaseAction::Denied) {
            CHECK(committed_after(r, d) <= limit);
        }
        CHECK(d.holds_lease() == (d.action == LeaseAction::Grant));
    }
}

TEST_CASE("leases: renewal when the slice runs low, keep while it does not") {
    const LeaseSettings s;
    struct Row {
        const char* what;
        std::uint64_t counted, ceiling;
        std::chrono::seconds expires_in;
        bool active;
        LeaseAction action;
        std::uint64_t new_ceiling;
    };
    // rate 1 MiB/s: slice 3 MiB, low below 1.5 MiB unused
    const Row rows[] = {
        {"plenty left, far from expiry", 10 * MiB, 13 * MiB, 25s, true, LeaseAction::Keep,
         13 * MiB},
        {"runs low: one more slice past what it counted", 12 * MiB, 13 * MiB, 25s, true,
         LeaseAction::Renew, 15 * MiB},
        {"used up: one more slice", 13 * MiB, 13 * MiB, 25s, true, LeaseAction::Renew, 16 * MiB},
        {"active near expiry: the same bytes for longer", 10 * MiB, 13 * MiB, 10s, true,
         LeaseAction::Renew, 13 * MiB},
        {"idle near expiry: given back", 10 * MiB, 13 * MiB, 10s, false, LeaseAction::Lapse,
         10 * MiB},
        {"idle, far from expiry: kept", 10 * MiB, 13 * MiB, 25s, false, LeaseAction::Keep,
         13 * MiB},
    };
    for (const auto& row : rows) {
        CAPTURE(row.what);
        auto r = request(100 * MiB, row.counted, row.ceiling);
        r.own_expires = kNow + row.expires_in;
        r.active = row.active;
        r.rate_bytes_per_second = MiB;
        const auto d = decide_lease(s, r);
        CHECK(d.action == row.action);
        CHECK(d.ceiling == row.new_ceiling);
        CHECK(d.holds_lease() == (row.action != LeaseAction::Lapse));
        if (row.action == LeaseAction::Renew) {
            CHECK(d.expires_at == kNow + 30s);
        }
    }
}

TEST_CASE(
    "leases: a live lease is not shrunk by the others, and is extended when nothing more is left") {
    const LeaseSettings s;
    auto r = request(10 * MiB, 4 * MiB, 4 * MiB + 10 * KiB);  // low: 10 KiB unused
    r.others = {{5 * MiB, 6 * MiB - 10 * KiB}};               // holds the rest
    r.rate_bytes_per_second = MiB;
    const auto d = decide_lease(s, r);
    CHECK(d.action == LeaseAction::Denied);
    CHECK(d.ceiling == 4 * MiB + 10 * KiB);
    CHECK(d.expires_at == kNow + 30s);
    CHECK(d.holds_lease());
}

TEST_CASE("leases: the block limit already passed (a top-up taken back) grants nothing") {
    const LeaseSettings s;
    auto r = request(5 * MiB, 6 * MiB);
    const auto d = decide_lease(s, r);
    CHECK(d.action == LeaseAction::Denied);
    CHECK(d.ceiling == 6 * MiB);
    CHECK_FALSE(d.holds_lease());
}

TEST_CASE("leases: a gateway without new traffic of its own asks for nothing") {
    const LeaseSettings s;
    auto r = request(100 * MiB, 2 * MiB);
    r.others = {{5 * MiB, 8 * MiB}};
    r.grew = false;
    const auto d = decide_lease(s, r);
    CHECK(d.action == LeaseAction::Idle);
    CHECK(d.ceiling == 2 * MiB);  // the kernel passes only the crossing slack
    CHECK_FALSE(d.holds_lease());
    r.grew = true;  // its flush brought bytes: now it asks
    CHECK(decide_lease(s, r).action == LeaseAction::Grant);
}

TEST_CASE("leases: an allowance that fell under the lease shrinks it to what is left") {
    const LeaseSettings s;
    auto r = request(2 * MiB, 100 * KiB, 10 * GiB);  // 10 GB leased, then an override of 2 MiB
    r.others = {{200 * KiB, 500 * KiB}};
    const auto d = decide_lease(s, r);
    CHECK(d.action == LeaseAction::Renew);
    CHECK(d.ceiling == 2 * MiB - 500 * KiB);
    CHECK(committed_after(r, d) == 2 * MiB);
    r.block_limit = 500 * KiB;  // less than the others hold: nothing here
    const auto none = decide_lease(s, r);
    CHECK(none.action == LeaseAction::Denied);
    CHECK(none.ceiling == 100 * KiB);
    CHECK_FALSE(none.holds_lease());
}

TEST_CASE("leases: a kernel quota epoch holds the ceiling plus the slack less its base") {
    constexpr std::uint64_t slack = 32 * KiB;
    CHECK(epoch_quota_bytes(10 * MiB, 2 * MiB, slack) == 8 * MiB + slack);
    CHECK(epoch_quota_bytes(2 * MiB, 2 * MiB, slack) == slack);      // no lease: just the slack
    CHECK(epoch_quota_bytes(2 * MiB, 2 * MiB + slack, slack) == 1);  // the slack spent: drop all
    CHECK(epoch_quota_bytes(2 * MiB, 3 * MiB, slack) == 1);
    CHECK(epoch_quota_bytes(UINT64_MAX, 0, slack) == UINT64_MAX);
}

TEST_CASE("leases: a raise of a used-up quota in a new epoch passes exactly the raise") {
    // Epoch 1 from base 1 MiB with a ceiling of 4 MiB ran out: it passed at
    // most its limit. Epoch 2 starts past it, so that the gateway's total
    // stays within the new ceiling plus one slack, whatever epoch 1 dropped.
    constexpr std::uint64_t slack = 32 * KiB;
    const std::uint64_t base = 1 * MiB, old_ceiling = 4 * MiB, new_ceiling = 6 * MiB;
    const auto limit = epoch_quota_bytes(old_ceiling, base, slack);
    const auto next_base = base + limit;
    CHECK(epoch_quota_bytes(new_ceiling, next_base, slack) == new_ceiling - old_ceiling);
    CHECK(base + limit + epoch_quota_bytes(new_ceiling, next_base, slack) == new_ceiling + slack);
    // A renewal in place later in epoch 2 raises it by the ceiling's growth.
    CHECK(epoch_quota_bytes(7 * MiB, next_base, slack) == 7 * MiB - old_ceiling);
}

TEST_CASE("leases: a gateway without a lease never raises its ceiling") {
    // Refused while another gateway holds the rest: each flush shows the
    // slack's bytes; its armed ceiling stays, so its kernel passes one slack.
    constexpr std::uint64_t slack = 32 * KiB;
    const LeaseSettings s;
    std::uint64_t counted = 5 * MiB, ceiling = counted;
    const std::uint64_t base = counted;
    for (int flush = 0; flush < 10; ++flush) {
        auto r = request(10 * MiB, counted);
        r.others = {{1 * MiB, 10 * MiB - 5 * MiB}};  // holds all the rest
        const auto d = decide_lease(s, r);
        REQUIRE(d.action == LeaseAction::Denied);
        CHECK(d.ceiling == counted);  // what it counted (the decision alone would follow it)
        ceiling = armed_ceiling(ceiling, d);
        counted = base + epoch_quota_bytes(ceiling, base, slack);  // it passed all it could
    }
    CHECK(ceiling == 5 * MiB);
    CHECK(counted == 5 * MiB + slack);
    // A lease (granted, renewed, even shrunk) is armed as decided.
    CHECK(armed_ceiling(5 * MiB, LeaseDecision{LeaseAction::Grant, 7 * MiB, kNow + 30s}) ==
          7 * MiB);
    CHECK(armed_ceiling(5 * MiB, LeaseDecision{LeaseAction::Renew, 4 * MiB, kNow + 30s}) ==
          4 * MiB);
    CHECK(armed_ceiling(5 * MiB, LeaseDecision{LeaseAction::Lapse, 6 * MiB, {}}) == 5 * MiB);
}
