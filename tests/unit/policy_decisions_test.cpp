#include <doctest/doctest.h>

#include "policy/decisions.hpp"

using namespace ctquota;
using namespace std::chrono;

namespace {

const core::TimePoint kCreated{sys_days{2026y / 10 / 3}};
const core::TimePoint kNow{sys_days{2026y / 11 / 26} + 12h};
const core::Cycle kCycle{core::TimePoint{sys_days{2026y / 11 / 1}},
                         core::TimePoint{sys_days{2026y / 12 / 1}}};

store::PolicySubscriber subscriber() {
    store::PolicySubscriber s;
    s.id = 7;
    s.external_id = "cust-7";
    s.plan = "home";
    s.created_at = kCreated;
    return s;
}

core::Evaluation evaluation(core::StateKind kind, std::vector<unsigned> warnings = {}) {
    core::Evaluation e;
    e.state.kind = kind;
    if (kind == core::StateKind::Throttled) {
        e.state.rate = core::Rate{2'000'000, 1'000'000};
    }
    e.counted_bytes = 900;
    e.allowance_bytes = 1000;
    e.warnings_reached = std::move(warnings);
    e.reason = "test reason";
    return e;
}

store::SubscriberStateRecord stored(const char* state, unsigned warned,
                                    std::optional<core::TimePoint> cycle_start) {
    store::SubscriberStateRecord s;
    s.subscriber_id = 7;
    s.state = state;
    if (std::string(state) == "throttled") {
        s.down_bps = 2'000'000;
        s.up_bps = 1'000'000;
    }
    s.reason = "before";
    s.since = kCreated;
    s.cycle_start = cycle_start;
    s.warned_percent = warned;
    return s;
}

std::vector<std::string> kinds(const policy::Decision& d) {
    std::vector<std::string> out;
    if (d.record) {
        for (const auto& e : d.record->events) {
            out.push_back(e.kind);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("a normal subscriber without a stored row and nothing new writes nothing") {
    const auto d = policy::decide(subscriber(), evaluation(core::StateKind::Normal), kCycle,
                                  std::nullopt, kNow);
    CHECK_FALSE(d.state_changed);
    CHECK_FALSE(d.record.has_value());
}

TEST_CASE("a state change records the row, one event and changes the kernel") {
    const auto d = policy::decide(subscriber(), evaluation(core::StateKind::Throttled), kCycle,
                                  std::nullopt, kNow);
    CHECK(d.state_changed);
    REQUIRE(d.record);
    CHECK(d.record->state.state == "throttled");
    CHECK(d.record->state.down_bps == 2'000'000u);
    CHECK(d.record->state.since == kNow);
    CHECK(d.record->state.cycle_start == kCycle.start);
    REQUIRE(kinds(d) == std::vector<std::string>{"state"});
    CHECK(d.record->events[0].from_state == "normal");
    CHECK(d.record->events[0].to_state == "throttled");
    CHECK(d.record->events[0].counted_bytes == 900u);
    CHECK(d.record->external_id == "cust-7");
}

TEST_CASE("the same state again changes nothing, since and reason stay") {
    const auto prev = stored("throttled", 0, kCycle.start);
    const auto d =
        policy::decide(subscriber(), evaluation(core::StateKind::Throttled), kCycle, prev, kNow);
    CHECK_FALSE(d.state_changed);
    CHECK_FALSE(d.record.has_value());
}

TEST_CASE("another throttle rate is a state change") {
    auto e = evaluation(core::StateKind::Throttled);
    e.state.rate.down_bps = 500'000;
    const auto d =
        policy::decide(subscriber(), e, kCycle, stored("throttled", 0, kCycle.start), kNow);
    CHECK(d.state_changed);
    CHECK(d.record->state.down_bps == 500'000u);
}

TEST_CASE("each warning threshold is reported once per cycle") {
    const auto first = policy::decide(subscriber(), evaluation(core::StateKind::Normal, {80}),
                                      kCycle, std::nullopt, kNow);
    REQUIRE(kinds(first) == std::vector<std::string>{"warning"});
    CHECK(first.record->state.warned_percent == 80);
    CHECK_FALSE(first.state_changed);

    const auto again = policy::decide(subscriber(), evaluation(core::StateKind::Normal, {80}),
                                      kCycle, first.record->state, kNow);
    CHECK_FALSE(again.record.has_value());

    const auto next = policy::decide(subscriber(), evaluation(core::StateKind::Normal, {80, 95}),
                                     kCycle, first.record->state, kNow);
    REQUIRE(kinds(next) == std::vector<std::string>{"warning"});
    CHECK(next.record->state.warned_percent == 95);
}

TEST_CASE("a new cycle is recorded, resets the warnings and lifts a block") {
    const core::TimePoint previous_cycle{sys_days{2026y / 10 / 1}};
    const auto d = policy::decide(subscriber(), evaluation(core::StateKind::Normal), kCycle,
                                  stored("blocked", 95, previous_cycle), kNow);
    CHECK(d.state_changed);
    CHECK(kinds(d) == std::vector<std::string>{"cycle", "state"});
    CHECK(d.record->state.state == "normal");
    CHECK(d.record->state.warned_percent == 0);
    CHECK(d.record->state.cycle_start == kCycle.start);
    CHECK_FALSE(d.record->state.down_bps.has_value());
}

TEST_CASE("desired_of reads a stored row back") {
    CHECK(policy::desired_of(stored("blocked", 0, std::nullopt)).kind == core::StateKind::Blocked);
    const auto t = policy::desired_of(stored("throttled", 0, std::nullopt));
    CHECK(t.kind == core::StateKind::Throttled);
    CHECK(t.rate == core::Rate{2'000'000, 1'000'000});
    CHECK(policy::desired_of(stored("nonsense", 0, std::nullopt)).kind == core::StateKind::Normal);
}
