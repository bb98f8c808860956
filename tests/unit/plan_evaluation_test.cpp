#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <vector>

#include "core/plan_evaluation.hpp"

using namespace std::chrono;
using namespace ctquota::core;

namespace {

constexpr std::uint64_t GB = 1'000'000'000ull;

TimePoint utc(int y, unsigned m, unsigned d, int h = 0) {
    return sys_days{year{y} / month{m} / day{d}} + hours{h};
}

const TimePoint kNow = utc(2026, 11, 20, 12);
const Cycle kCycle{utc(2026, 11, 1), utc(2026, 12, 1)};
const TimePoint kDayAgo = kNow - 24h;
const TimePoint kInAWeek = kNow + 24h * 7;
const Rate kHomeRate{2'000'000, 1'000'000};
const Rate kBiz1{20'000'000, 20'000'000};
const Rate kBiz2{5'000'000, 5'000'000};

Plan make_plan(std::uint64_t quota, std::vector<Tier> tiers, std::vector<unsigned> warn = {}) {
    Plan p;
    p.name = "test";
    p.quota_bytes = quota;
    p.tiers = std::move(tiers);
    p.warn_percent = std::move(warn);
    return p;
}

const Tier kThrottle100{100, Tier::Action::Throttle, Rate{2'000'000, 1'000'000}};
const Tier kBlock100{100, Tier::Action::Block, {}};

Plan home() {
    return make_plan(100 * GB, {kThrottle100}, {80, 95});
}
Plan prepaid() {
    return make_plan(10 * GB, {kBlock100}, {50, 90});
}
Plan business() {
    return make_plan(1000 * GB, {Tier{100, Tier::Action::Throttle, Rate{20'000'000, 20'000'000}},
                                 Tier{150, Tier::Action::Throttle, Rate{5'000'000, 5'000'000}}});
}
Plan fup_then_block() {
    return make_plan(10 * GB, {kThrottle100, Tier{200, Tier::Action::Block, {}}});
}
Plan night_free() {
    auto p = home();
    p.free_windows = {TimeWindow{1h, 7h}};
    return p;
}
Plan zero_rated() {
    auto p = home();
    p.zero_rated = {*Prefix::parse("198.18.0.0/24")};
    return p;
}
Plan free_and_zero() {
    auto p = night_free();
    p.zero_rated = {*Prefix::parse("198.18.0.0/24")};
    return p;
}
Plan unlimited() {
    Plan p;
    p.name = "unlimited";
    return p;
}
Plan counting(CountedDirections c) {
    auto p = home();
    p.counts = c;
    return p;
}

CycleUsage down(std::uint64_t d, std::uint64_t u = 0) {
    CycleUsage usage;
    usage.down_bytes = d;
    usage.up_bytes = u;
    return usage;
}

// Usage with its free-window and zero-rated parts.
CycleUsage with(CycleUsage u, std::uint64_t free_down, std::uint64_t free_up,
                std::uint64_t zero_down, std::uint64_t zero_up) {
    u.free_down_bytes = free_down;
    u.free_up_bytes = free_up;
    u.zero_down_bytes = zero_down;
    u.zero_up_bytes = zero_up;
    return u;
}

TopUp topup(std::uint64_t bytes, TimePoint created, TimePoint expires) {
    return TopUp{bytes, created, expires};
}

struct Row {
    const char* what;
    Plan plan;
    CycleUsage usage;
    std::optional<std::uint64_t> quota_override;
    std::vector<TopUp> topups;
    StateKind kind;
    Rate rate;
    std::uint64_t counted;
    std::optional<std::uint64_t> allowance;
    std::vector<unsigned> warnings;
    std::optional<std::uint64_t> until_block;
    const char* reason;  // substring
};

}  // namespace

TEST_CASE("evaluate: tiers, warnings, directions, free windows, zero rating, top-ups") {
    // One row per line pair reads better than one field per line.
    // clang-format off
    // {what, plan, usage, override, top-ups,
    //  state, rate, counted, allowance, warnings, bytes_until_block, reason substring}
    const std::vector<Row> rows = {
        // --- thresholds and warnings
        {"home: well within", home(), down(50 * GB, 10 * GB), {}, {},
         StateKind::Normal, {}, 60 * GB, 100 * GB, {}, {}, "within allowance: 60% of 100.0 GB used"},
        {"home: one byte before 80%", home(), down(80 * GB - 1), {}, {},
         StateKind::Normal, {}, 80 * GB - 1, 100 * GB, {}, {}, "79% of 100.0 GB"},
        {"home: exactly 80%", home(), down(80 * GB), {}, {},
         StateKind::Normal, {}, 80 * GB, 100 * GB, {80}, {}, "80% of"},
        {"home: 95%", home(), down(95 * GB), {}, {},
         StateKind::Normal, {}, 95 * GB, 100 * GB, {80, 95}, {}, "within allowance"},
        {"home: one byte short of the tier", home(), down(100 * GB - 1), {}, {},
         StateKind::Normal, {}, 100 * GB - 1, 100 * GB, {80, 95}, {}, "within"},
        {"home: exactly 100% throttles", home(), down(100 * GB), {}, {},
         StateKind::Throttled, kHomeRate, 100 * GB, 100 * GB, {80, 95}, {},
         "100% of 100.0 GB used: throttle tier (at 100%): 2 Mbit/s down, 1 Mbit/s up"},
        // --- several tiers
        {"business: 120%", business(), down(1200 * GB), {}, {},
         StateKind::Throttled, kBiz1, 1200 * GB, 1000 * GB, {}, {}, "throttle tier (at 100%)"},
        {"business: just below 150%", business(), down(1500 * GB - 1), {}, {},
         StateKind::Throttled, kBiz1, 1500 * GB - 1, 1000 * GB, {}, {}, "149% of 1.0 TB"},
        {"business: 150%", business(), down(1500 * GB), {}, {},
         StateKind::Throttled, kBiz2, 1500 * GB, 1000 * GB, {}, {}, "(at 150%): 5 Mbit/s"},
        {"throttle then block: throttled, block armed", fup_then_block(), down(15 * GB), {}, {},
         StateKind::Throttled, kHomeRate, 15 * GB, 10 * GB, {}, 5 * GB, "throttle"},
        {"throttle then block: blocked", fup_then_block(), down(25 * GB), {}, {},
         StateKind::Blocked, {}, 25 * GB, 10 * GB, {}, 0, "250% of 10.0 GB used: block tier"},
        // --- block and bytes_until_block
        {"prepaid: 8 GB", prepaid(), down(8 * GB), {}, {},
         StateKind::Normal, {}, 8 * GB, 10 * GB, {50}, 2 * GB, "80% of 10.0 GB"},
        {"prepaid: 9 GB reaches 90%", prepaid(), down(9 * GB), {}, {},
         StateKind::Normal, {}, 9 * GB, 10 * GB, {50, 90}, 1 * GB, "within"},
        {"prepaid: 10 GB blocks", prepaid(), down(10 * GB), {}, {},
         StateKind::Blocked, {}, 10 * GB, 10 * GB, {50, 90}, 0, "100% of 10.0 GB used: block tier"},
        // --- directions
        {"counts down only", counting(CountedDirections::Down), down(90 * GB, 20 * GB), {}, {},
         StateKind::Normal, {}, 90 * GB, 100 * GB, {80}, {}, "90%"},
        {"counts up only", counting(CountedDirections::Up), down(150 * GB, 20 * GB), {}, {},
         StateKind::Normal, {}, 20 * GB, 100 * GB, {}, {}, "20%"},
        {"counts both", counting(CountedDirections::Both), down(90 * GB, 20 * GB), {}, {},
         StateKind::Throttled, kHomeRate, 110 * GB, 100 * GB, {80, 95}, {}, "110%"},
        // --- free windows and zero rating
        {"night-free: free part not counted", night_free(), with(down(90 * GB, 20 * GB), 30 * GB, 0, 0, 0), {}, {},
         StateKind::Normal, {}, 80 * GB, 100 * GB, {80}, {}, "80%"},
        {"night-free: free up part too", night_free(), with(down(90 * GB, 20 * GB), 30 * GB, 20 * GB, 0, 0), {}, {},
         StateKind::Normal, {}, 60 * GB, 100 * GB, {}, {}, "60%"},
        {"no free windows in the plan: free part counts", home(),
         with(down(90 * GB, 20 * GB), 30 * GB, 0, 0, 0), {}, {},
         StateKind::Throttled, kHomeRate, 110 * GB, 100 * GB, {80, 95}, {}, "110%"},
        {"zero-rated part not counted", zero_rated(), with(down(100 * GB, 10 * GB), 0, 0, 40 * GB, 0), {}, {},
         StateKind::Normal, {}, 70 * GB, 100 * GB, {}, {}, "70%"},
        {"zero-rated up part too", zero_rated(), with(down(100 * GB, 10 * GB), 0, 0, 40 * GB, 10 * GB), {}, {},
         StateKind::Normal, {}, 60 * GB, 100 * GB, {}, {}, "60%"},
        {"no zero-rated list: zero part counts", home(), with(down(100 * GB, 10 * GB), 0, 0, 40 * GB, 0), {}, {},
         StateKind::Throttled, kHomeRate, 110 * GB, 100 * GB, {80, 95}, {}, "110%"},
        {"free and zero-rated together", free_and_zero(), with(down(100 * GB, 10 * GB), 20 * GB, 0, 30 * GB, 0), {}, {},
         StateKind::Normal, {}, 60 * GB, 100 * GB, {}, {}, "60%"},
        {"inconsistent parts floor at zero", zero_rated(), with(down(1 * GB), 0, 0, 5 * GB, 0), {}, {},
         StateKind::Normal, {}, 0, 100 * GB, {}, {}, "0% of"},
        // --- top-ups and overrides
        {"prepaid + active top-up", prepaid(), down(12 * GB), {}, {topup(5 * GB, kDayAgo, kInAWeek)},
         StateKind::Normal, {}, 12 * GB, 15 * GB, {50}, 3 * GB, "80% of 15.0 GB"},
        {"top-up expiring exactly now is gone", prepaid(), down(12 * GB), {}, {topup(5 * GB, kDayAgo, kNow)},
         StateKind::Blocked, {}, 12 * GB, 10 * GB, {50, 90}, 0, "block"},
        {"top-up created exactly now counts", prepaid(), down(12 * GB), {}, {topup(5 * GB, kNow, kInAWeek)},
         StateKind::Normal, {}, 12 * GB, 15 * GB, {50}, 3 * GB, "within"},
        {"future top-up does not count yet", prepaid(), down(12 * GB), {}, {topup(5 * GB, kNow + 1s, kInAWeek)},
         StateKind::Blocked, {}, 12 * GB, 10 * GB, {50, 90}, 0, "block"},
        {"two top-ups, one expired", prepaid(), down(12 * GB), {},
         {topup(5 * GB, kDayAgo, kInAWeek), topup(7 * GB, kDayAgo - 24h, kDayAgo)},
         StateKind::Normal, {}, 12 * GB, 15 * GB, {50}, 3 * GB, "within"},
        {"override raises the quota", prepaid(), down(12 * GB), 20 * GB, {},
         StateKind::Normal, {}, 12 * GB, 20 * GB, {50}, 8 * GB, "60% of 20.0 GB"},
        {"override to zero blocks at once", prepaid(), down(0), 0, {},
         StateKind::Blocked, {}, 0, 0, {50, 90}, 0, "0 B used of a 0 B allowance: block tier"},
        {"override + top-up", prepaid(), down(9 * GB), 5 * GB, {topup(5 * GB, kDayAgo, kInAWeek)},
         StateKind::Normal, {}, 9 * GB, 10 * GB, {50, 90}, 1 * GB, "within"},
        {"top-up lifts a throttle", home(), down(105 * GB), {}, {topup(10 * GB, kDayAgo, kInAWeek)},
         StateKind::Normal, {}, 105 * GB, 110 * GB, {80, 95}, {}, "95% of 110.0 GB"},
        // --- unlimited
        {"unlimited: always normal", unlimited(), down(5000 * GB, 5000 * GB), {}, {},
         StateKind::Normal, {}, 10000 * GB, {}, {}, {}, "unlimited plan"},
        {"unlimited ignores override and top-ups", unlimited(), down(50 * GB), 1 * GB, {topup(1, kDayAgo, kInAWeek)},
         StateKind::Normal, {}, 50 * GB, {}, {}, {}, "unlimited plan"},
    };
    // clang-format on
    for (const auto& row : rows) {
        CAPTURE(row.what);
        EvaluationInput in;
        in.plan = &row.plan;
        in.cycle = kCycle;
        in.usage = row.usage;
        in.quota_override = row.quota_override;
        in.topups = row.topups;
        in.now = kNow;
        const auto ev = evaluate(in);
        CHECK(ev.state.kind == row.kind);
        CHECK(ev.state.rate == row.rate);
        CHECK(ev.counted_bytes == row.counted);
        CHECK(ev.allowance_bytes == row.allowance);
        CHECK(ev.warnings_reached == row.warnings);
        CHECK(ev.bytes_until_block == row.until_block);
        if (row.allowance) {
            CHECK(ev.remaining_bytes ==
                  (*row.allowance > row.counted ? *row.allowance - row.counted : 0));
        } else {
            CHECK_FALSE(ev.remaining_bytes);
        }
        CAPTURE(ev.reason);
        CHECK(ev.reason.find(row.reason) != std::string::npos);
    }
}

TEST_CASE("evaluate: no plan means unlimited") {
    EvaluationInput in;
    in.cycle = kCycle;
    in.usage = down(10 * GB, 1 * GB);
    in.now = kNow;
    const auto ev = evaluate(in);
    CHECK(ev.state == DesiredState{});
    CHECK(ev.counted_bytes == 11 * GB);
    CHECK_FALSE(ev.allowance_bytes);
    CHECK(ev.reason == "no plan: unlimited");
    CHECK(ev.next_check == kCycle.end);
}

TEST_CASE("evaluate: next_check is the cycle end or the next top-up change") {
    const auto plan = prepaid();
    EvaluationInput in;
    in.plan = &plan;
    in.cycle = kCycle;
    in.now = kNow;
    CHECK(evaluate(in).next_check == kCycle.end);
    in.topups = {topup(GB, kNow - 24h, kNow + 48h), topup(GB, kNow - 24h, kNow + 24h),
                 topup(GB, kNow - 48h, kNow - 24h)};
    CHECK(evaluate(in).next_check == kNow + 24h);
    in.topups.push_back(topup(GB, kNow + 1h, kNow + 72h));  // becomes active later
    CHECK(evaluate(in).next_check == kNow + 1h);
    in.topups = {topup(GB, kNow - 24h, kCycle.end + 24h * 30)};
    CHECK(evaluate(in).next_check == kCycle.end);
}

TEST_CASE("percentages and sums saturate instead of overflowing") {
    constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
    CHECK(percent_of(10 * GB, 100) == 10 * GB);
    CHECK(percent_of(10 * GB, 150) == 15 * GB);
    CHECK(percent_of(199, 50) == 99);  // floor
    CHECK(percent_of(kMax, 1000) == kMax);
    CHECK(percent_of(kMax, 100) == kMax);
    CHECK(active_topup_bytes({topup(kMax, kNow, kNow + 1s), topup(5, kNow, kNow + 1s)}, kNow) ==
          kMax);
    const auto plan = make_plan(kMaxQuotaBytes, {Tier{1000, Tier::Action::Block, {}}});
    EvaluationInput in;
    in.plan = &plan;
    in.cycle = kCycle;
    in.usage = down(kMax, kMax);
    in.topups = {topup(kMax, kNow, kNow + 1s)};
    in.now = kNow;
    const auto ev = evaluate(in);
    CHECK(ev.counted_bytes == kMax);
    // The allowance saturates at what PostgreSQL and an nft quota hold.
    CHECK(ev.allowance_bytes == kMaxAllowanceBytes);
    CHECK(kMaxAllowanceBytes <= std::uint64_t{std::numeric_limits<std::int64_t>::max()});
    CHECK(ev.state.kind == StateKind::Blocked);
    // Ten top-ups of 1 EB on a 1 EB override: 2 EB, not 11 EB (which wrapped
    // nothing but broke the kernel quota and the bigint columns).
    in.usage = down(0, 0);
    in.quota_override = kMaxQuotaBytes;
    in.topups.assign(10, topup(kMaxQuotaBytes, kNow, kNow + 1s));
    const auto big = evaluate(in);
    CHECK(big.allowance_bytes == kMaxAllowanceBytes);
    CHECK(big.remaining_bytes == kMaxAllowanceBytes);
    CHECK(big.state.kind == StateKind::Normal);
}

TEST_CASE("state names") {
    for (auto k : {StateKind::Normal, StateKind::Throttled, StateKind::Blocked}) {
        CHECK(state_from_string(to_string(k)) == k);
    }
    CHECK(to_string(StateKind::Throttled) == "throttled");
    CHECK_FALSE(state_from_string("Blocked"));
    CHECK_FALSE(state_from_string(""));
}
