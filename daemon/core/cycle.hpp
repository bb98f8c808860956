#pragma once
// Billing-cycle math and free-window tests in a plan's time zone. Time zones
// come from Howard Hinnant's date/tz over the OS database (/usr/share/zoneinfo);
// that lookup is the only thing here that touches the file system.
//
// Choices, each tested:
// - Monthly cycles start on `day` at `time_of_day` local time; a day past the
//   month's end (31 in February) means the month's last day.
// - A local start time that does not exist (inside a DST gap) means the first
//   instant after the gap; an ambiguous one (inside a DST overlap) the earlier
//   of the two instants.
// - EveryNDays cycles are consecutive periods of exactly N*24h (UTC) counted
//   from the anchor, also backwards for times before it; DST does not shift them.
// - Free windows are local time-of-day ranges [start, end) in the plan's zone;
//   end <= start wraps midnight. On a DST change night a window simply covers
//   the local times that exist.

#include <string_view>

#include "core/clock.hpp"
#include "core/plan.hpp"

namespace ctquota::core {

struct Cycle {
    TimePoint start{};
    TimePoint end{};
    bool operator==(const Cycle&) const = default;
};  // [start, end)

// anchor: when the subscriber started (EveryNDays counts from it). Throws
// std::invalid_argument for an unknown zone (or a spec validate_plan rejects).
Cycle cycle_at(const CycleSpec& spec, TimePoint anchor, TimePoint t);
// The cycle running at the end of the calendar day `day` (its midnight in UTC)
// in spec.time_zone: the cycle that starts that day if one does, otherwise the
// one running through it. Throws like cycle_at.
Cycle cycle_on_day(const CycleSpec& spec, TimePoint anchor, TimePoint day);
bool valid_time_zone(std::string_view name);
// Is t inside one of the plan's free windows (local time in plan.cycle.time_zone)?
// Throws std::invalid_argument for an unknown zone.
bool in_free_window(const Plan& plan, TimePoint t);

// The local time of day (minutes since local midnight) of t in `time_zone`.
std::chrono::minutes local_time_of_day(std::string_view time_zone, TimePoint t);
// Is the local minute-of-day m inside window w (end <= start wraps midnight)?
bool window_contains(const TimeWindow& w, std::chrono::minutes m);

}  // namespace ctquota::core
