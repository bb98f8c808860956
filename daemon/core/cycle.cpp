#include "core/cycle.hpp"

#include <date/date.h>
#include <date/tz.h>

#include <stdexcept>
#include <string>

namespace ctquota::core {
namespace {

using namespace std::chrono;
using LocalMinutes = date::local_time<minutes>;

const date::time_zone* zone_or_throw(std::string_view name) {
    if (name.empty()) {
        throw std::invalid_argument("empty time zone name");
    }
    try {
        return date::locate_zone(name);
    } catch (const std::exception&) {
        throw std::invalid_argument("unknown time zone \"" + std::string(name) + "\"");
    }
}

// Local wall-clock time -> the instant. A time inside a DST gap becomes the
// first instant after the gap; one inside an overlap the earlier instant.
TimePoint to_instant(const date::time_zone* zone, LocalMinutes local) {
    const auto info = zone->get_info(local);
    switch (info.result) {
        case date::local_info::nonexistent:
            return TimePoint{info.second.begin};
        case date::local_info::ambiguous:
        case date::local_info::unique:
            break;
    }
    const auto sys = date::sys_time<seconds>{local.time_since_epoch()} - info.first.offset;
    return TimePoint{sys.time_since_epoch()};
}

// The civil month as a count of months since 1970-01.
int month_index(date::year_month ym) {
    return (static_cast<int>(ym.year()) - 1970) * 12 + static_cast<int>(unsigned(ym.month())) - 1;
}

date::year_month month_from_index(int i) {
    const int y = 1970 + (i >= 0 ? i / 12 : -((-i + 11) / 12));
    const int m = i - (y - 1970) * 12;
    return date::year{y} / date::month{static_cast<unsigned>(m + 1)};
}

TimePoint monthly_start(const CycleSpec& spec, const date::time_zone* zone, int month) {
    const auto ym = month_from_index(month);
    const auto last = (ym / date::last).day();
    const auto wanted = date::day{static_cast<unsigned>(spec.day)};
    const auto ymd = ym / (wanted > last ? last : wanted);
    return to_instant(zone,
                      LocalMinutes{date::local_days{ymd}.time_since_epoch()} + spec.time_of_day);
}

Cycle monthly_cycle(const CycleSpec& spec, TimePoint t) {
    if (spec.day < 1 || spec.day > 31 || spec.time_of_day < minutes{0} ||
        spec.time_of_day >= hours{24}) {
        throw std::invalid_argument("monthly cycle: day must be 1..31 and time 00:00..23:59");
    }
    const auto* zone = zone_or_throw(spec.time_zone);
    const auto local = zone->to_local(date::sys_time<nanoseconds>{t.time_since_epoch()});
    const date::year_month_day ymd{date::floor<date::days>(local)};
    int month = month_index(ymd.year() / ymd.month());
    // The start in t's local month is normally the answer or one month late;
    // the loops also cover zones whose DST changes at midnight.
    while (monthly_start(spec, zone, month) > t) {
        --month;
    }
    while (monthly_start(spec, zone, month + 1) <= t) {
        ++month;
    }
    return Cycle{monthly_start(spec, zone, month), monthly_start(spec, zone, month + 1)};
}

Cycle every_n_days_cycle(const CycleSpec& spec, TimePoint anchor, TimePoint t) {
    if (spec.days < 1 || spec.days > kMaxCycleDays) {
        throw std::invalid_argument("every_n_days cycle: days must be 1..366");
    }
    zone_or_throw(spec.time_zone);
    const nanoseconds length = hours{24} * spec.days;
    const auto since = t - anchor;
    auto k = since / length;  // truncates toward zero
    if (since < nanoseconds{0} && since % length != nanoseconds{0}) {
        --k;
    }
    const auto start = anchor + length * k;
    return Cycle{start, start + length};
}

}  // namespace

Cycle cycle_at(const CycleSpec& spec, TimePoint anchor, TimePoint t) {
    if (spec.kind == CycleSpec::Kind::EveryNDays) {
        return every_n_days_cycle(spec, anchor, t);
    }
    return monthly_cycle(spec, t);
}

Cycle cycle_on_day(const CycleSpec& spec, TimePoint anchor, TimePoint day) {
    const auto* zone = zone_or_throw(spec.time_zone);
    const auto midnight = date::floor<date::days>(day).time_since_epoch();
    const auto next_local_midnight = LocalMinutes{midnight + date::days{1}};
    return cycle_at(spec, anchor, to_instant(zone, next_local_midnight) - nanoseconds{1});
}

bool valid_time_zone(std::string_view name) {
    try {
        zone_or_throw(name);
        return true;
    } catch (const std::invalid_argument&) {
        return false;
    }
}

std::chrono::minutes local_time_of_day(std::string_view time_zone, TimePoint t) {
    const auto* zone = zone_or_throw(time_zone);
    const auto local = zone->to_local(date::sys_time<nanoseconds>{t.time_since_epoch()});
    return date::floor<minutes>(local - date::floor<date::days>(local));
}

bool window_contains(const TimeWindow& w, std::chrono::minutes m) {
    if (w.start < w.end) {
        return w.start <= m && m < w.end;
    }
    return m >= w.start || m < w.end;  // wraps midnight (start == end: the whole day)
}

bool in_free_window(const Plan& plan, TimePoint t) {
    if (plan.free_windows.empty()) {
        return false;
    }
    const auto m = local_time_of_day(plan.cycle.time_zone, t);
    for (const auto& w : plan.free_windows) {
        if (window_contains(w, m)) {
            return true;
        }
    }
    return false;
}

}  // namespace ctquota::core
