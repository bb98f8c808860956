#pragma once
// The parameters of a usage time series: ISO-8601 times, a granularity, and
// the whole buckets between `from` and `to`. Buckets are UTC hours, UTC days
// or billing cycles (calendar months in UTC until plans exist); `from` is
// rounded down and `to` up to bucket boundaries, so every point covers a
// whole bucket. Pure.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/validation.hpp"
#include "core/clock.hpp"

namespace ctquota::api {

enum class Granularity : std::uint8_t { Hour, Day, Cycle };

constexpr std::size_t kMaxSeriesPoints = 10000;

struct SeriesRange {
    Granularity granularity = Granularity::Hour;
    core::TimePoint from{};  // start of the first bucket
    core::TimePoint to{};    // end of the last bucket (exclusive)
    std::size_t points = 0;
};

// "2024-05-01" (midnight UTC) or "2024-05-01T12:30:00Z" / "...+02:00" (seconds
// and fractions optional; a zone is required). A space where the offset's '+'
// belongs is taken as '+', since an unescaped '+' in a query string reads as one.
std::optional<core::TimePoint> parse_timestamp(std::string_view text);

const char* granularity_name(Granularity g);
core::TimePoint bucket_start(Granularity g, core::TimePoint t);
core::TimePoint next_bucket(Granularity g, core::TimePoint bucket);

// from, to and granularity of a query; 400 when one is malformed, 422 when the
// range is empty or longer than kMaxSeriesPoints buckets. Defaults: the last
// 24 hours, 31 days or 12 cycles up to and including the one containing `to`
// (which defaults to `now`).
SeriesRange parse_series_query(const Query& query, core::TimePoint now);

}  // namespace ctquota::api
