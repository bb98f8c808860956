#include "api/series.hpp"

#include <charconv>

#include "api/problem.hpp"
#include "core/calendar.hpp"

namespace ctquota::api {
namespace {

using namespace std::chrono;

// Digits only, exactly text.size() of them, within [lo, hi].
std::optional<int> number(std::string_view text, int lo, int hi) {
    int n = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
    }
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc{} || n < lo || n > hi) {
        return std::nullopt;
    }
    return n;
}

// "HH:MM" as an offset east of UTC, with its sign.
std::optional<minutes> zone_offset(std::string_view text) {
    if (text == "Z") {
        return minutes{0};
    }
    if (text.size() != 6 || (text[0] != '+' && text[0] != '-' && text[0] != ' ') ||
        text[3] != ':') {
        return std::nullopt;
    }
    const auto h = number(text.substr(1, 2), 0, 23);
    const auto m = number(text.substr(4, 2), 0, 59);
    if (!h || !m) {
        return std::nullopt;
    }
    const minutes offset{*h * 60 + *m};
    return text[0] == '-' ? -offset : offset;
}

// "HH:MM[:SS[.fff]]" followed by a zone.
std::optional<nanoseconds> time_of_day(std::string_view text) {
    const auto zone_at = text.find_first_of("Z+- ");
    if (zone_at == std::string_view::npos || zone_at < 5 || text[2] != ':') {
        return std::nullopt;
    }
    const auto clock = text.substr(0, zone_at);
    const auto h = number(clock.substr(0, 2), 0, 23);
    const auto m = number(clock.substr(3, 2), 0, 59);
    std::optional<int> s = 0;
    nanoseconds fraction{0};
    if (clock.size() > 5) {
        if (clock[5] != ':' || clock.size() < 8) {
            return std::nullopt;
        }
        s = number(clock.substr(6, 2), 0, 59);
        const auto frac = clock.substr(8);
        if (!frac.empty()) {
            const auto digits = frac.substr(1);
            const auto n = number(digits.substr(0, 9), 0, 999999999);
            if (frac[0] != '.' || digits.empty() || digits.size() > 9 || !n) {
                return std::nullopt;
            }
            auto value = static_cast<std::int64_t>(*n);
            for (auto k = digits.size(); k < 9; ++k) {
                value *= 10;
            }
            fraction = nanoseconds{value};
        }
    }
    const auto zone = zone_offset(text.substr(zone_at));
    if (!h || !m || !s || !zone || clock.size() == 6 || clock.size() == 7) {
        return std::nullopt;
    }
    return hours{*h} + minutes{*m} + seconds{*s} + fraction - *zone;
}

std::int64_t months_between(core::TimePoint from, core::TimePoint to) {
    const year_month_day a{floor<days>(from)};
    const year_month_day b{floor<days>(to)};
    return (static_cast<int>(b.year()) - static_cast<int>(a.year())) * 12LL +
           static_cast<int>(static_cast<unsigned>(b.month())) -
           static_cast<int>(static_cast<unsigned>(a.month()));
}

std::int64_t buckets_between(Granularity g, core::TimePoint from, core::TimePoint to) {
    switch (g) {
        case Granularity::Hour:
            return duration_cast<hours>(to - from).count();
        case Granularity::Day:
            return duration_cast<days>(to - from).count();
        case Granularity::Cycle:
            return months_between(from, to);
    }
    return 0;
}

core::TimePoint buckets_before(Granularity g, core::TimePoint end, int n) {
    switch (g) {
        case Granularity::Hour:
            return end - hours{n};
        case Granularity::Day:
            return end - days{n};
        case Granularity::Cycle: {
            const year_month_day ymd{floor<days>(end)};
            return sys_days{(ymd.year() / ymd.month() - months{n}) / 1};
        }
    }
    return end;
}

Granularity parse_granularity(const Query& query) {
    const auto text = query_value(query, "granularity").value_or("hour");
    if (text == "hour") {
        return Granularity::Hour;
    }
    if (text == "day") {
        return Granularity::Day;
    }
    if (text == "cycle") {
        return Granularity::Cycle;
    }
    throw bad_request("granularity must be hour, day or cycle, got '" + text.substr(0, 32) + "'");
}

std::optional<core::TimePoint> time_param(const Query& query, const std::string& name) {
    const auto text = query_value(query, name);
    if (!text) {
        return std::nullopt;
    }
    const auto t = parse_timestamp(*text);
    if (!t) {
        throw bad_request(name +
                          " must be an ISO-8601 date (2024-05-01) or time with a zone "
                          "(2024-05-01T12:00:00Z, 2024-05-01T14:00:00%2B02:00), got '" +
                          text->substr(0, 40) + "'");
    }
    return t;
}

int default_points(Granularity g) {
    switch (g) {
        case Granularity::Hour:
            return 24;
        case Granularity::Day:
            return 31;
        case Granularity::Cycle:
            return 12;
    }
    return 1;
}

}  // namespace

std::optional<core::TimePoint> parse_timestamp(std::string_view text) {
    const auto date = parse_date(text.substr(0, 10));
    if (!date) {
        return std::nullopt;
    }
    if (text.size() == 10) {
        return date;
    }
    if (text[10] != 'T') {
        return std::nullopt;
    }
    const auto offset = time_of_day(text.substr(11));
    if (!offset) {
        return std::nullopt;
    }
    return *date + *offset;
}

const char* granularity_name(Granularity g) {
    switch (g) {
        case Granularity::Hour:
            return "hour";
        case Granularity::Day:
            return "day";
        case Granularity::Cycle:
            return "cycle";
    }
    return "hour";
}

core::TimePoint bucket_start(Granularity g, core::TimePoint t) {
    switch (g) {
        case Granularity::Hour:
            return core::hour_start(t);
        case Granularity::Day:
            return floor<days>(t);
        case Granularity::Cycle:
            return core::month_start_utc(t);
    }
    return t;
}

core::TimePoint next_bucket(Granularity g, core::TimePoint bucket) {
    switch (g) {
        case Granularity::Hour:
            return bucket + hours{1};
        case Granularity::Day:
            return bucket + days{1};
        case Granularity::Cycle:
            return core::next_month_start_utc(bucket);
    }
    return bucket;
}

SeriesRange parse_series_query(const Query& query, core::TimePoint now) {
    check_query(query, {"from", "to", "granularity"});
    SeriesRange out;
    out.granularity = parse_granularity(query);
    const auto g = out.granularity;
    const auto from = time_param(query, "from");
    const auto to = time_param(query, "to").value_or(now);
    const auto to_start = bucket_start(g, to);
    out.to = to_start == to ? to : next_bucket(g, to_start);
    out.from = from ? bucket_start(g, *from) : buckets_before(g, out.to, default_points(g));
    const auto n = buckets_between(g, out.from, out.to);
    if (n < 1) {
        throw invalid_query({{"from", "must be before to (the range holds no whole " +
                                          std::string(granularity_name(g)) + ")"}});
    }
    if (n > static_cast<std::int64_t>(kMaxSeriesPoints)) {
        throw invalid_query(
            {{"from", "the range holds " + std::to_string(n) + " " + granularity_name(g) +
                          "s; at most " + std::to_string(kMaxSeriesPoints) +
                          " points per request (narrow from/to or use a coarser "
                          "granularity)"}});
    }
    out.points = static_cast<std::size_t>(n);
    return out;
}

}  // namespace ctquota::api
