#include "core/calendar.hpp"

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

}  // namespace ctquota::core
