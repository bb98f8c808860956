#include <doctest/doctest.h>

#include "core/plan_usage_rules.hpp"

using namespace ctquota::core;
using namespace std::chrono;

namespace {

Plan night_and_zero() {
    Plan p;
    p.name = "night";
    p.cycle.kind = CycleSpec::Kind::Monthly;
    p.cycle.day = 15;
    p.cycle.time_zone = "UTC";
    p.quota_bytes = 1000;
    p.free_windows.push_back(TimeWindow{hours(1), hours(7)});
    p.zero_rated.push_back(*Prefix::parse("198.18.9.0/24"));
    return p;
}

TimePoint at(int d, int h) {
    return TimePoint{sys_days{2026y / 11 / d} + hours(h)};
}

}  // namespace

TEST_CASE("subscribers on a plan get its cycle and classes; others the calendar month") {
    const std::unordered_map<std::string, Plan> plans{{"night", night_and_zero()}};
    const PlanUsageRules policy(plans, {{1, {"night", at(1, 0)}}, {2, {"gone-plan", at(1, 0)}}});
    CHECK_FALSE(policy.counts_everything());

    const auto p1 = policy.period(1, at(20, 12));
    CHECK(p1.start == at(15, 0));
    CHECK(p1.end == TimePoint{sys_days{2026y / 12 / 15}});
    const auto p2 = policy.period(2, at(20, 12));  // unknown plan: calendar month
    CHECK(p2.start == at(1, 0));
    CHECK(policy.period(3, at(20, 12)).start == at(1, 0));

    const auto server = *IpAddress::parse("198.18.0.2");
    const auto zero = *IpAddress::parse("198.18.9.9");
    CHECK(policy.classify(1, server, at(20, 12)) == UsageClass::Counted);
    CHECK(policy.classify(1, zero, at(20, 12)) == UsageClass::ZeroRated);
    CHECK(policy.classify(1, server, at(20, 3)) == UsageClass::Free);
    CHECK(policy.classify(1, server, at(20, 7)) == UsageClass::Counted);  // end is exclusive
    CHECK(policy.classify(3, zero, at(20, 3)) == UsageClass::Counted);
}

TEST_CASE("plans without free windows or zero rating count everything") {
    Plan plain;
    plain.name = "plain";
    const PlanUsageRules policy({{"plain", plain}}, {{1, {"plain", at(1, 0)}}});
    CHECK(policy.counts_everything());
}
