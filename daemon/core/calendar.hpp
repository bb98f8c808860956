#pragma once
// Billing-period and hour bucketing. Until plans exist, a billing period is
// the calendar month in UTC.

#include <cstdint>
#include <string>

#include "core/clock.hpp"

namespace ctquota::core {

TimePoint hour_start(TimePoint t);
TimePoint month_start_utc(TimePoint t);
TimePoint next_month_start_utc(TimePoint t);

// Seconds since the epoch, for storage and logs.
std::int64_t to_unix_seconds(TimePoint t);
TimePoint from_unix_seconds(std::int64_t s);

// "2024-05-01T12:34:56Z" (UTC, whole seconds), for JSON and logs.
std::string iso8601_utc(TimePoint t);

}  // namespace ctquota::core
