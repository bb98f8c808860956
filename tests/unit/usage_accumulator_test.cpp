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
Period month_of(TimePoint t) {
    return Period{month_start_utc(t), next_month_start_utc(t)};
}
void add(UsageAccumulator& acc, SubscriberId s, TimePoint t, const Usage& u,
         UsageClass cls = UsageClass::Counted) {
    acc.add(s, t, month_of(t), cls, u);
}
}  // namespace

TEST_CASE("deltas are bucketed by hour and by billing period") {
    UsageAccumulator acc;
    add(acc, 1, at(2026, 11, 30, 23, 10), usage(100, 1000));
    add(acc, 1, at(2026, 11, 30, 23, 50), usage(5, 50));
    add(acc, 1, at(2026, 12, 1, 0, 5), usage(7, 70));  // next hour, next month
    add(acc, 2, at(2026, 11, 30, 23, 20), usage(1, 2));
    acc.add_unattributed(at(2026, 11, 30, 23, 20), usage(9, 9));
    auto batch = acc.take();
    CHECK(acc.empty());

    std::map<std::pair<SubscriberId, TimePoint>, PeriodUsage> periods;
    for (const auto& p : batch.periods) {
        CHECK(periods.count({p.subscriber, p.period_start}) == 0);  // each key once
        periods[{p.subscriber, p.period_start}] = p;
    }
    CHECK(periods.size() == 3);
    CHECK(periods[{1, at(2026, 11, 1)}].usage == Usage{{105, 2}, {1050, 2}});
    CHECK(periods[{1, at(2026, 11, 1)}].period_end == at(2026, 12, 1));
    CHECK(periods[{1, at(2026, 12, 1)}].usage == Usage{{7, 1}, {70, 1}});
    CHECK(periods[{2, at(2026, 11, 1)}].usage == Usage{{1, 1}, {2, 1}});

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

TEST_CASE("free and zero-rated parts are kept apart inside the same rows") {
    UsageAccumulator acc;
    const auto t = at(2026, 11, 5, 3, 0);
    add(acc, 1, t, usage(10, 100));
    add(acc, 1, t, usage(1, 2), UsageClass::Free);
    add(acc, 1, t, usage(3, 4), UsageClass::ZeroRated);
    auto batch = acc.take();
    REQUIRE(batch.periods.size() == 1);
    REQUIRE(batch.hours.size() == 1);
    for (const ClassifiedUsage& c : {static_cast<const ClassifiedUsage&>(batch.periods[0]),
                                     static_cast<const ClassifiedUsage&>(batch.hours[0])}) {
        CHECK(c.usage == Usage{{14, 3}, {106, 3}});
        CHECK(c.free == Usage{{1, 1}, {2, 1}});
        CHECK(c.zero_rated == Usage{{3, 1}, {4, 1}});
    }
}

TEST_CASE("a failed flush merges back and nothing is lost or doubled, parts included") {
    UsageAccumulator acc;
    add(acc, 1, at(2026, 11, 5, 10), usage(100, 200));
    add(acc, 1, at(2026, 11, 5, 10), usage(5, 6), UsageClass::Free);
    add(acc, 1, at(2026, 11, 5, 10), usage(7, 8), UsageClass::ZeroRated);
    auto failed = acc.take();
    add(acc, 1, at(2026, 11, 5, 10, 30), usage(1, 2));
    add(acc, 1, at(2026, 11, 5, 10, 30), usage(1, 1), UsageClass::Free);
    acc.merge_back(failed);
    auto batch = acc.take();
    REQUIRE(batch.periods.size() == 1);
    CHECK(batch.periods[0].usage == Usage{{114, 5}, {217, 5}});
    CHECK(batch.periods[0].free == Usage{{6, 2}, {7, 2}});
    CHECK(batch.periods[0].zero_rated == Usage{{7, 1}, {8, 1}});
    CHECK(batch.periods[0].period_end == at(2026, 12, 1));
}

TEST_CASE("memory is bounded by subscribers and hours, not by events") {
    UsageAccumulator acc;
    for (int i = 0; i < 100000; ++i) {
        add(acc, i % 10, at(2026, 11, 5, 10, i % 60), usage(1, 1));
    }
    CHECK(acc.pending_buckets() == 10);
}

TEST_CASE("per-subscriber billing periods") {
    UsageAccumulator acc;
    // Subscriber 2's cycle starts on the 15th.
    const Period oct15{at(2026, 10, 15), at(2026, 11, 15)};
    const Period nov15{at(2026, 11, 15), at(2026, 12, 15)};
    add(acc, 1, at(2026, 11, 20), usage(1, 1));
    acc.add(2, at(2026, 11, 20), nov15, UsageClass::Counted, usage(1, 1));
    acc.add(2, at(2026, 11, 10), oct15, UsageClass::Counted, usage(1, 1));
    auto batch = acc.take();
    std::map<std::pair<SubscriberId, TimePoint>, TimePoint> ends;
    for (const auto& p : batch.periods) {
        ends[{p.subscriber, p.period_start}] = p.period_end;
    }
    CHECK(ends.at({1, at(2026, 11, 1)}) == at(2026, 12, 1));
    CHECK(ends.at({2, at(2026, 11, 15)}) == at(2026, 12, 15));
    CHECK(ends.at({2, at(2026, 10, 15)}) == at(2026, 11, 15));
}
