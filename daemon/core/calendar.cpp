#include "core/calendar.hpp"

#include <cstdio>

namespace ctquota::core {

using namespace std::chrono;

TimePoint hour_start(TimePoint t) {
    return floor<hours>(t);
}

TimePoint month_start_utc(TimePoint t) {
    const year_month_day ymd{floor<days>(t)};
    return sys_days{ymd.year() / ymd.month() / 1};
}

TimePoint next_month_start_utc(TimePoint t) {
    const year_month_day ymd{floor<days>(t)};
    const auto next = ymd.year() / ymd.month() / 1 + months{1};
    return sys_days{next};
}

std::int64_t to_unix_seconds(TimePoint t) {
    return duration_cast<seconds>(t.time_since_epoch()).count();
}

TimePoint from_unix_seconds(std::int64_t s) {
    return TimePoint{seconds{s}};
}

std::string iso8601_utc(TimePoint t) {
    const auto day = floor<days>(t);
    const year_month_day ymd{day};
    const hh_mm_ss hms{floor<seconds>(t - day)};
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                  static_cast<int>(hms.seconds().count()));
    return buf;
}

}  // namespace ctquota::core
