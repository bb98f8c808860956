#include <doctest/doctest.h>

#include <map>

#include "core/calendar.hpp"
#include "core/usage_accumulator.hpp"

using namespace std::chrono;
using namespace ctquota::core;

namespace {
TimePoint at(int y, unsigned m, unsigned d, int h = 0, int min = 0) {
    return sys_days{year{y} / month{m} / day{d}} + hours{h} + minutes{min};
}
Usage usage(std::uint64_t up, std::uint64_t down) {
    return Usage{{up, 1}, {down, 1}};
}
PeriodFn calendar() {
    return [](SubscriberId, TimePoint t) { return month_start_utc(t); };
}
}  // namespace

TEST_CASE("deltas are bucketed by hour and by billing period") {
    UsageAccumulator acc(calendar());
    acc.add(1, at(2026, 11, 30, 23, 10), usage(100, 1000));
    acc.add(1, at(2026, 11, 30, 23, 50), usage(5, 50));
    acc.add(1, at(2026, 12, 1, 0, 5), usage(7, 70));  // next hour, next month
    acc.add(2, at(2026, 11, 30, 23, 20), usage(1, 2));
    acc.add_unattributed(at(2026, 11, 30, 23, 20), usage(9, 9));
    auto batch = acc.take();
    CHECK(acc.empty());

    std::map<std::pair<SubscriberId, TimePoint>, Usage> periods;
    for (const auto& p : batch.periods) {
        periods[{p.subscriber, p.period_start}] += p.usage;
    }
    CHECK(periods.size() == 3);
    CHECK(periods[{1, at(2026, 11, 1)}] == Usage{{105, 2}, {1050, 2}});
    CHECK(periods[{1, at(2026, 12, 1)}] == Usage{{7, 1}, {70, 1}});
    CHECK(periods[{2, at(2026, 11, 1)}] == Usage{{1, 1}, {2, 1}});

    std::map<std::pair<SubscriberId, TimePoint>, Usage> hours;
    for (const auto& h : batch.hours) {
        hours[{h.subscriber, h.hour}] += h.usage;
    }
    CHECK(hours.size() == 3);
    CHECK(hours[{1, at(2026, 11, 30, 23)}] == Usage{{105, 2}, {1050, 2}});
    CHECK(hours[{1, at(2026, 12, 1, 0)}] == Usage{{7, 1}, {70, 1}});
    REQUIRE(batch.unattributed.size() == 1);
    CHECK(batch.unattributed[0].usage == Usage{{9, 1}, {9, 1}});
}

TEST_CASE("a failed flush merges back and nothing is lost or doubled") {
    UsageAccumulator acc(calendar());
    acc.add(1, at(2026, 11, 5, 10), usage(100, 200));
    auto failed = acc.take();
    acc.add(1, at(2026, 11, 5, 10, 30), usage(1, 2));
    acc.merge_back(failed);
    auto batch = acc.take();
    REQUIRE(batch.periods.size() == 1);
    CHECK(batch.periods[0].usage == Usage{{101, 2}, {202, 2}});
}

TEST_CASE("memory is bounded by subscribers and hours, not by events") {
    UsageAccumulator acc(calendar());
    for (int i = 0; i < 100000; ++i) {
        acc.add(i % 10, at(2026, 11, 5, 10, i % 60), usage(1, 1));
    }
    CHECK(acc.pending_buckets() == 10);
}

TEST_CASE("per-subscriber billing periods") {
    // Subscriber 2 has a cycle starting on the 15th.
    UsageAccumulator acc(
        [](SubscriberId s, TimePoint t) {
            if (s != 2) {
                return month_start_utc(t);
            }
            const year_month_day ymd{floor<days>(t)};
            auto start = sys_days{ymd.year() / ymd.month() / 15};
            return TimePoint{t >= start ? start
                                        : sys_days{ymd.year() / ymd.month() / 15 - months{1}}};
        },
        false);
    acc.add(1, at(2026, 11, 20), usage(1, 1));
    acc.add(2, at(2026, 11, 20), usage(1, 1));
    acc.add(2, at(2026, 11, 10), usage(1, 1));
    auto batch = acc.take();
    std::map<std::pair<SubscriberId, TimePoint>, Usage> periods;
    for (const auto& p : batch.periods) {
        periods[{p.subscriber, p.period_start}] += p.usage;
    }
    CHECK(periods.count({1, at(2026, 11, 1)}) == 1);
    CHECK(periods.count({2, at(2026, 11, 15)}) == 1);
    CHECK(periods.count({2, at(2026, 10, 15)}) == 1);
}
