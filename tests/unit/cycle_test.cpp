#include <doctest/doctest.h>

#include <stdexcept>
#include <vector>

#include "core/calendar.hpp"
#include "core/cycle.hpp"

using namespace std::chrono;
using namespace ctquota::core;

namespace {

TimePoint utc(int y, unsigned m, unsigned d, int h = 0, int min = 0) {
    return sys_days{year{y} / month{m} / day{d}} + hours{h} + minutes{min};
}

CycleSpec monthly(int day_of_month, minutes at, const char* zone) {
    CycleSpec s;
    s.kind = CycleSpec::Kind::Monthly;
    s.day = day_of_month;
    s.time_of_day = at;
    s.time_zone = zone;
    return s;
}

struct Row {
    const char* what;
    CycleSpec spec;
    TimePoint t;
    TimePoint start;
    TimePoint end;
};

void check_rows(const std::vector<Row>& rows) {
    for (const auto& row : rows) {
        CAPTURE(row.what);
        const auto c = cycle_at(row.spec, TimePoint{}, row.t);
        CHECK(iso8601_utc(c.start) == iso8601_utc(row.start));
        CHECK(iso8601_utc(c.end) == iso8601_utc(row.end));
        CHECK(c.start <= row.t);
        CHECK(row.t < c.end);
    }
}

}  // namespace

TEST_CASE("monthly cycles in UTC, including day 31 in February and leap years") {
    const auto d1 = monthly(1, 0min, "UTC");
    const auto d31 = monthly(31, 0min, "UTC");
    const auto d30 = monthly(30, 0min, "UTC");
    check_rows({
        {"mid-month", d1, utc(2026, 11, 26, 17, 43), utc(2026, 11, 1), utc(2026, 12, 1)},
        {"exactly at the start", d1, utc(2026, 11, 1), utc(2026, 11, 1), utc(2026, 12, 1)},
        {"one ns before the end", d1, utc(2026, 12, 1) - 1ns, utc(2026, 11, 1), utc(2026, 12, 1)},
        {"year end", d1, utc(2026, 12, 31, 23), utc(2026, 12, 1), utc(2027, 1, 1)},
        {"31 in Feb (2026): Feb 28", d31, utc(2026, 2, 15), utc(2026, 1, 31), utc(2026, 2, 28)},
        {"after Feb 28 (2026)", d31, utc(2026, 3, 10), utc(2026, 2, 28), utc(2026, 3, 31)},
        {"31 in Feb (2028, leap): Feb 29", d31, utc(2028, 2, 15), utc(2028, 1, 31),
         utc(2028, 2, 29)},
        {"Feb 29 2028 itself", d31, utc(2028, 2, 29, 12), utc(2028, 2, 29), utc(2028, 3, 31)},
        {"31 in April: April 30", d31, utc(2026, 5, 5), utc(2026, 4, 30), utc(2026, 5, 31)},
        {"30 in Feb 2100 (no leap year)", d30, utc(2100, 3, 1), utc(2100, 2, 28), utc(2100, 3, 30)},
        {"day 15 06:00 before the start", monthly(15, 6h, "UTC"), utc(2026, 11, 15, 5, 59),
         utc(2026, 10, 15, 6), utc(2026, 11, 15, 6)},
        {"before 1970", d1, utc(1969, 7, 20, 20, 17), utc(1969, 7, 1), utc(1969, 8, 1)},
    });
}

TEST_CASE("monthly cycles start at local midnight in the plan's zone") {
    const auto berlin = monthly(1, 0min, "Europe/Berlin");
    const auto new_york = monthly(1, 0min, "America/New_York");
    const auto kolkata = monthly(1, 0min, "Asia/Kolkata");
    check_rows({
        // November: CET (+1); October starts in CEST (+2), so October is 1h longer.
        {"Berlin, November", berlin, utc(2026, 11, 26, 17, 43), utc(2026, 10, 31, 23),
         utc(2026, 11, 30, 23)},
        {"Berlin, Nov 1 00:30 local", berlin, utc(2026, 10, 31, 23, 30), utc(2026, 10, 31, 23),
         utc(2026, 11, 30, 23)},
        {"Berlin, Oct 31 23:30 local", berlin, utc(2026, 10, 31, 22, 30), utc(2026, 9, 30, 22),
         utc(2026, 10, 31, 23)},
        // New York: November starts in EDT (-4) and ends in EST (-5).
        {"New York, November", new_york, utc(2026, 11, 26, 17), utc(2026, 11, 1, 4),
         utc(2026, 12, 1, 5)},
        {"New York, Nov 30 23:00 local is Dec 1 in UTC", new_york, utc(2026, 12, 1, 4),
         utc(2026, 11, 1, 4), utc(2026, 12, 1, 5)},
        // Kolkata: +05:30, no DST.
        {"Kolkata, November", kolkata, utc(2026, 11, 26), utc(2026, 10, 31, 18, 30),
         utc(2026, 11, 30, 18, 30)},
        {"Kolkata, Nov 1 00:10 local", kolkata, utc(2026, 10, 31, 18, 40),
         utc(2026, 10, 31, 18, 30), utc(2026, 11, 30, 18, 30)},
    });
}

TEST_CASE("monthly cycle starts inside DST gaps and overlaps") {
    // Berlin 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00 UTC; 02:30 does not exist
    // and means the first instant after the gap.
    const auto gap = monthly(29, 2h + 30min, "Europe/Berlin");
    // Berlin 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00 UTC; 02:30 happens twice
    // (00:30 and 01:30 UTC) and means the earlier.
    const auto overlap = monthly(25, 2h + 30min, "Europe/Berlin");
    // New York 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT ->
    // 01:00 EST (06:00 UTC).
    const auto ny_gap = monthly(8, 2h + 15min, "America/New_York");
    const auto ny_overlap = monthly(1, 1h + 30min, "America/New_York");
    check_rows({
        {"gap: start is the end of the gap", gap, utc(2026, 3, 29, 1), utc(2026, 3, 29, 1),
         utc(2026, 4, 29, 0, 30)},
        {"gap: just before", gap, utc(2026, 3, 29, 0, 59), utc(2026, 2, 28, 1, 30),
         utc(2026, 3, 29, 1)},
        {"overlap: the earlier instant", overlap, utc(2026, 10, 25, 0, 30),
         utc(2026, 10, 25, 0, 30), utc(2026, 11, 25, 1, 30)},
        {"overlap: second 02:30 is inside the new cycle", overlap, utc(2026, 10, 25, 1, 30),
         utc(2026, 10, 25, 0, 30), utc(2026, 11, 25, 1, 30)},
        {"New York gap", ny_gap, utc(2026, 3, 8, 7), utc(2026, 3, 8, 7), utc(2026, 4, 8, 6, 15)},
        {"New York overlap", ny_overlap, utc(2026, 11, 1, 6), utc(2026, 11, 1, 5, 30),
         utc(2026, 12, 1, 6, 30)},
    });
}

TEST_CASE("consecutive monthly cycles tile time without gaps") {
    for (const char* zone :
         {"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"}) {
        CAPTURE(zone);
        const auto spec = monthly(31, 2h + 30min, zone);
        auto c = cycle_at(spec, TimePoint{}, utc(2026, 1, 15));
        for (int i = 0; i < 30; ++i) {
            const auto next = cycle_at(spec, TimePoint{}, c.end);
            CHECK(next.start == c.end);
            CHECK(cycle_at(spec, TimePoint{}, c.end - 1ns) == c);
            CHECK(c.end - c.start >= hours{24 * 28 - 1});
            c = next;
        }
    }
}

TEST_CASE("every-N-days cycles count exact 24h days from the anchor") {
    CycleSpec spec;
    spec.kind = CycleSpec::Kind::EveryNDays;
    spec.days = 30;
    spec.time_zone = "Europe/Berlin";  // used for free windows only: no DST shift here
    const auto anchor = utc(2026, 1, 10, 12);
    const auto len = hours{24 * 30};
    struct R {
        const char* what;
        TimePoint t;
        TimePoint start;
    };
    const R rows[] = {
        {"at the anchor", anchor, anchor},
        {"inside the first", anchor + 29 * 24h, anchor},
        {"second cycle", anchor + len, anchor + len},
        {"across the March DST change", anchor + 70 * 24h, anchor + 2 * len},
        {"before the anchor", anchor - 1s, anchor - len},
        {"long before the anchor", anchor - len - 1s, anchor - 2 * len},
        {"exactly one length before", anchor - len, anchor - len},
    };
    for (const auto& row : rows) {
        CAPTURE(row.what);
        const auto c = cycle_at(spec, anchor, row.t);
        CHECK(c.start == row.start);
        CHECK(c.end == row.start + len);
    }
    spec.days = 1;
    CHECK(cycle_at(spec, anchor, anchor + 36h).start == anchor + 24h);
}

TEST_CASE("unknown zones are rejected") {
    CHECK(valid_time_zone("UTC"));
    CHECK(valid_time_zone("Europe/Berlin"));
    CHECK(valid_time_zone("America/Argentina/Buenos_Aires"));
    for (const char* bad :
         {"", "Mars/Olympus", "europe/berlin", "../etc/passwd", "/etc/localtime", "Europe/"}) {
        CAPTURE(bad);
        CHECK_FALSE(valid_time_zone(bad));
    }
    CHECK_THROWS_AS(cycle_at(monthly(1, 0min, "Mars/Olympus"), TimePoint{}, utc(2026, 1, 1)),
                    std::invalid_argument);
    Plan plan;
    plan.cycle.time_zone = "Mars/Olympus";
    plan.free_windows = {TimeWindow{1h, 7h}};
    CHECK_THROWS_AS(in_free_window(plan, utc(2026, 1, 1)), std::invalid_argument);
}

TEST_CASE("free windows in local time, across midnight and DST changes") {
    Plan night;
    night.cycle.time_zone = "Europe/Berlin";
    night.free_windows = {TimeWindow{1h, 7h}};
    Plan wrap;
    wrap.cycle.time_zone = "UTC";
    wrap.free_windows = {TimeWindow{22h, 6h}};
    Plan overlap_window;
    overlap_window.cycle.time_zone = "Europe/Berlin";
    overlap_window.free_windows = {TimeWindow{2h, 2h + 30min}};
    Plan none;

    struct R {
        const char* what;
        const Plan* plan;
        TimePoint t;
        bool free;
    };
    const R rows[] = {
        {"Berlin 01:30 CET", &night, utc(2026, 11, 26, 0, 30), true},
        {"Berlin 00:59 CET", &night, utc(2026, 11, 25, 23, 59), false},
        {"Berlin 01:00 CET", &night, utc(2026, 11, 26, 0), true},
        {"Berlin 07:00 CET (end excluded)", &night, utc(2026, 11, 26, 6), false},
        {"Berlin 06:59 CEST in summer", &night, utc(2026, 7, 1, 4, 59), true},
        {"Berlin 07:30 CEST in summer", &night, utc(2026, 7, 1, 5, 30), false},
        // Spring forward 2026-03-29: 01:00-07:00 local is 00:00-05:00 UTC (5 real hours).
        {"spring: 01:00 CET", &night, utc(2026, 3, 29, 0), true},
        {"spring: 03:00 CEST right after the gap", &night, utc(2026, 3, 29, 1), true},
        {"spring: 06:59 CEST", &night, utc(2026, 3, 29, 4, 59), true},
        {"spring: 07:00 CEST", &night, utc(2026, 3, 29, 5), false},
        // Fall back 2026-10-25: 01:00 CEST is 23:00 UTC the day before, 07:00 CET 06:00 UTC.
        {"fall: 00:59 CEST", &night, utc(2026, 10, 24, 22, 59), false},
        {"fall: 01:00 CEST", &night, utc(2026, 10, 24, 23), true},
        {"fall: 06:59 CET", &night, utc(2026, 10, 25, 5, 59), true},
        {"fall: 07:00 CET", &night, utc(2026, 10, 25, 6), false},
        {"fall: first 02:10", &overlap_window, utc(2026, 10, 25, 0, 10), true},
        {"fall: between the two 02:xx", &overlap_window, utc(2026, 10, 25, 0, 45), false},
        {"fall: second 02:10", &overlap_window, utc(2026, 10, 25, 1, 10), true},
        {"wrap 22:00", &wrap, utc(2026, 1, 1, 22), true},
        {"wrap 23:59", &wrap, utc(2026, 1, 1, 23, 59), true},
        {"wrap 00:00", &wrap, utc(2026, 1, 2, 0), true},
        {"wrap 05:59", &wrap, utc(2026, 1, 2, 5, 59), true},
        {"wrap 06:00", &wrap, utc(2026, 1, 2, 6), false},
        {"wrap 21:59", &wrap, utc(2026, 1, 1, 21, 59), false},
        {"no windows", &none, utc(2026, 1, 1, 3), false},
    };
    for (const auto& row : rows) {
        CAPTURE(row.what);
        CHECK(in_free_window(*row.plan, row.t) == row.free);
    }
    CHECK(window_contains(TimeWindow{5h, 5h}, 17h));  // equal ends: the whole day (validation
                                                      // rejects such windows in plans)
    CHECK(local_time_of_day("Asia/Kolkata", utc(2026, 1, 1, 20)) == 1h + 30min);
}
