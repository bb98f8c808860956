#include <doctest/doctest.h>

#include "core/calendar.hpp"

using namespace std::chrono;
using namespace ctquota::core;

namespace {
TimePoint at(int y, unsigned m, unsigned d, int h = 0, int min = 0) {
    return sys_days{year{y} / month{m} / day{d}} + hours{h} + minutes{min};
}
}  // namespace

TEST_CASE("month and hour buckets in UTC") {
    CHECK(month_start_utc(at(2026, 11, 26, 17, 43)) == at(2026, 11, 1));
    CHECK(month_start_utc(at(2026, 12, 31, 23, 59)) == at(2026, 12, 1));
    CHECK(next_month_start_utc(at(2026, 12, 31, 23, 59)) == at(2027, 1, 1));
    CHECK(next_month_start_utc(at(2028, 2, 29, 12)) == at(2028, 3, 1));
    CHECK(hour_start(at(2026, 11, 26, 17, 43)) == at(2026, 11, 26, 17));
    CHECK(to_unix_seconds(from_unix_seconds(1'800'000'000)) == 1'800'000'000);
}
