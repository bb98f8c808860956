#include "core/plan.hpp"

#include <array>
#include <cctype>
#include <charconv>

#include "core/cycle.hpp"
#include "core/duration.hpp"

namespace ctquota::core {
namespace {

using namespace std::chrono;

bool mul_checked(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
    return !__builtin_mul_overflow(a, b, &out);
}

// "12", "1.5", followed by an optional unit (after optional spaces), which must
// be one of `units`. Exact: the value times the unit must be a whole number.
struct Unit {
    std::string_view name;
    std::uint64_t scale;
};

template <std::size_t N>
std::optional<std::uint64_t> parse_quantity(std::string_view text,
                                            const std::array<Unit, N>& units) {
    text = trim(text);
    std::uint64_t mantissa = 0;
    std::uint64_t divisor = 1;
    bool seen_digit = false;
    bool seen_point = false;
    std::size_t i = 0;
    for (; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '.' && !seen_point && seen_digit) {
            seen_point = true;
            continue;
        }
        if (!std::isdigit(static_cast<unsigned char>(c))) {
            break;
        }
        seen_digit = true;
        if (!mul_checked(mantissa, 10, mantissa) ||
            __builtin_add_overflow(mantissa, static_cast<std::uint64_t>(c - '0'), &mantissa)) {
            return std::nullopt;
        }
        if (seen_point && !mul_checked(divisor, 10, divisor)) {
            return std::nullopt;
        }
    }
    if (!seen_digit || (i > 0 && text[i - 1] == '.')) {
        return std::nullopt;
    }
    const auto unit = trim(text.substr(i));
    for (const auto& u : units) {
        if (u.name != unit) {
            continue;
        }
        std::uint64_t scaled = 0;
        if (!mul_checked(mantissa, u.scale, scaled) || scaled % divisor != 0) {
            return std::nullopt;
        }
        return scaled / divisor;
    }
    return std::nullopt;
}

constexpr std::uint64_t kK = 1000;
constexpr std::uint64_t kKi = 1024;

constexpr std::array<Unit, 14> kByteUnits{{
    {"", 1},
    {"B", 1},
    {"kB", kK},
    {"KB", kK},
    {"MB", kK* kK},
    {"GB", kK* kK* kK},
    {"TB", kK* kK* kK* kK},
    {"PB", kK* kK* kK* kK* kK},
    {"KiB", kKi},
    {"MiB", kKi* kKi},
    {"GiB", kKi* kKi* kKi},
    {"TiB", kKi* kKi* kKi* kKi},
    {"PiB", kKi* kKi* kKi* kKi* kKi},
    {"EB", kK* kK* kK* kK* kK* kK},
}};

constexpr std::array<Unit, 6> kRateUnits{{
    {"bit/s", 1},
    {"kbit/s", kK},
    {"Mbit/s", kK* kK},
    {"Gbit/s", kK* kK* kK},
    {"Tbit/s", kK* kK* kK* kK},
    {"", 1},
}};

// value / scale with one decimal, trailing ".0" dropped when `drop_zero`.
std::string scaled(std::uint64_t value, std::uint64_t scale, std::string_view unit,
                   bool drop_zero) {
    const auto tenths = (value % scale) * 10 / scale;
    std::string out = std::to_string(value / scale);
    if (!(drop_zero && tenths == 0)) {
        out += "." + std::to_string(tenths);
    }
    out += " ";
    out += unit;
    return out;
}

std::string idx(std::string_view list, std::size_t i) {
    return std::string(list) + "[" + std::to_string(i) + "]";
}

void validate_cycle(const CycleSpec& c) {
    if (!valid_time_zone(c.time_zone)) {
        throw PlanError("cycle.time_zone", "unknown time zone \"" + c.time_zone +
                                               "\" (an IANA name like "
                                               "\"Europe/Berlin\" or \"UTC\")");
    }
    if (c.kind == CycleSpec::Kind::Monthly) {
        if (c.day < 1 || c.day > 31) {
            throw PlanError("cycle.day", "expected 1..31 (past the month's end: its last day)");
        }
        if (c.time_of_day < minutes{0} || c.time_of_day >= hours{24}) {
            throw PlanError("cycle.time", "expected a local time 00:00..23:59");
        }
    } else if (c.days < 1 || c.days > kMaxCycleDays) {
        throw PlanError("cycle.days", "expected 1..366 days");
    }
}

void validate_tiers(const Plan& plan) {
    if (plan.tiers.size() > kMaxListEntries) {
        throw PlanError("tiers", "too many tiers (at most 64)");
    }
    for (std::size_t i = 0; i < plan.tiers.size(); ++i) {
        const auto& t = plan.tiers[i];
        if (t.at_percent < 1 || t.at_percent > kMaxPercent) {
            throw PlanError(idx("tiers", i) + ".at_percent", "expected 1..1000 (percent)");
        }
        if (i > 0 && t.at_percent <= plan.tiers[i - 1].at_percent) {
            throw PlanError(idx("tiers", i) + ".at_percent",
                            "tiers must be in strictly ascending at_percent order");
        }
        if (i > 0 && plan.tiers[i - 1].action == Tier::Action::Block) {
            throw PlanError(idx("tiers", i), "no tier can follow a block tier");
        }
        if (t.action == Tier::Action::Block) {
            if (t.rate != Rate{}) {
                throw PlanError(idx("tiers", i) + ".down_bps", "a block tier takes no rate");
            }
            continue;
        }
        const std::pair<const char*, std::uint64_t> rates[] = {{"down_bps", t.rate.down_bps},
                                                               {"up_bps", t.rate.up_bps}};
        for (const auto& [name, bps] : rates) {
            if (bps < kMinRateBps || bps > kMaxRateBps) {
                throw PlanError(idx("tiers", i) + "." + name,
                                "expected a rate from 1 kbit/s to 1 Tbit/s");
            }
        }
    }
}

}  // namespace

PlanError::PlanError(std::string key_, std::string message_)
    : std::runtime_error(key_ + ": " + message_),
      key(std::move(key_)),
      message(std::move(message_)) {}

bool valid_plan_name(std::string_view name) {
    if (name.empty() || name.size() > 63) {
        return false;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        const auto c = static_cast<unsigned char>(name[i]);
        const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
            return false;
        }
    }
    return true;
}

void validate_plan(const Plan& plan) {
    if (!valid_plan_name(plan.name)) {
        throw PlanError("name", "\"" + plan.name +
                                    "\" is no plan name: 1-63 of a-z 0-9 . _ - starting with a "
                                    "letter or digit");
    }
    if (plan.description.size() > kMaxDescriptionBytes) {
        throw PlanError("description", "longer than 1024 bytes");
    }
    validate_cycle(plan.cycle);
    if (plan.quota_bytes && *plan.quota_bytes > kMaxQuotaBytes) {
        throw PlanError("quota_bytes", "larger than 1 EB");
    }
    if (!plan.quota_bytes && !plan.tiers.empty()) {
        throw PlanError("tiers", "an unlimited plan (no quota) cannot have tiers");
    }
    if (!plan.quota_bytes && !plan.warn_percent.empty()) {
        throw PlanError("warn_percent", "an unlimited plan (no quota) cannot have warnings");
    }
    if (plan.warn_percent.size() > kMaxListEntries) {
        throw PlanError("warn_percent", "too many entries (at most 64)");
    }
    for (std::size_t i = 0; i < plan.warn_percent.size(); ++i) {
        const auto w = plan.warn_percent[i];
        if (w < 1 || w >= kMaxPercent) {
            throw PlanError(idx("warn_percent", i), "expected 1..999 (percent)");
        }
        if (i > 0 && w <= plan.warn_percent[i - 1]) {
            throw PlanError(idx("warn_percent", i), "must be strictly ascending");
        }
    }
    validate_tiers(plan);
    if (plan.free_windows.size() > kMaxListEntries) {
        throw PlanError("free_windows", "too many windows (at most 64)");
    }
    for (std::size_t i = 0; i < plan.free_windows.size(); ++i) {
        const auto& w = plan.free_windows[i];
        for (const auto& [name, m] : {std::pair{"start", w.start}, std::pair{"end", w.end}}) {
            if (m < minutes{0} || m >= hours{24}) {
                throw PlanError(idx("free_windows", i) + "." + name, "expected 00:00..23:59");
            }
        }
        if (w.start == w.end) {
            throw PlanError(idx("free_windows", i) + ".end",
                            "equals start: a window must not be empty or the whole day");
        }
    }
    for (const auto* list : {&plan.zero_rated, &plan.always_allowed}) {
        if (list->size() > kMaxPrefixEntries) {
            throw PlanError(list == &plan.zero_rated ? "zero_rated" : "always_allowed",
                            "too many prefixes (at most 4096)");
        }
    }
}

std::optional<std::chrono::minutes> parse_time_of_day(std::string_view text) {
    if (text.size() != 5 || text[2] != ':') {
        return std::nullopt;
    }
    int h = 0;
    int m = 0;
    const auto* p = text.data();
    if (!std::isdigit(static_cast<unsigned char>(p[0])) ||
        !std::isdigit(static_cast<unsigned char>(p[3]))) {
        return std::nullopt;
    }
    if (std::from_chars(p, p + 2, h).ptr != p + 2 ||
        std::from_chars(p + 3, p + 5, m).ptr != p + 5 || h > 23 || m > 59) {
        return std::nullopt;
    }
    return hours{h} + minutes{m};
}

std::string format_time_of_day(std::chrono::minutes m) {
    const auto total = static_cast<int>(((m.count() % 1440) + 1440) % 1440);
    char buf[8] = {
        static_cast<char>('0' + total / 600),     static_cast<char>('0' + total / 60 % 10), ':',
        static_cast<char>('0' + total % 60 / 10), static_cast<char>('0' + total % 10),      '\0'};
    return buf;
}

std::optional<std::uint64_t> parse_byte_quantity(std::string_view text) {
    return parse_quantity(text, kByteUnits);
}

std::optional<std::uint64_t> parse_bit_rate(std::string_view text) {
    return parse_quantity(text, kRateUnits);
}

std::string format_bytes(std::uint64_t bytes) {
    constexpr std::pair<std::uint64_t, std::string_view> kUnits[] = {
        {kK * kK * kK * kK * kK * kK, "EB"},
        {kK * kK * kK * kK * kK, "PB"},
        {kK * kK * kK * kK, "TB"},
        {kK * kK * kK, "GB"},
        {kK * kK, "MB"},
        {kK, "kB"}};
    for (const auto& [scale, unit] : kUnits) {
        if (bytes >= scale) {
            return scaled(bytes, scale, unit, false);
        }
    }
    return std::to_string(bytes) + " B";
}

std::string format_bit_rate(std::uint64_t bps) {
    constexpr std::pair<std::uint64_t, std::string_view> kUnits[] = {{kK * kK * kK * kK, "Tbit/s"},
                                                                     {kK * kK * kK, "Gbit/s"},
                                                                     {kK * kK, "Mbit/s"},
                                                                     {kK, "kbit/s"}};
    for (const auto& [scale, unit] : kUnits) {
        if (bps >= scale) {
            return scaled(bps, scale, unit, true);
        }
    }
    return std::to_string(bps) + " bit/s";
}

std::string_view to_string(CountedDirections counts) {
    switch (counts) {
        case CountedDirections::Down:
            return "down";
        case CountedDirections::Up:
            return "up";
        case CountedDirections::Both:
            break;
    }
    return "both";
}

std::optional<CountedDirections> counted_directions_from_string(std::string_view text) {
    if (text == "both") {
        return CountedDirections::Both;
    }
    if (text == "down") {
        return CountedDirections::Down;
    }
    if (text == "up") {
        return CountedDirections::Up;
    }
    return std::nullopt;
}

std::string_view to_string(Tier::Action action) {
    return action == Tier::Action::Block ? "block" : "throttle";
}

std::optional<Tier::Action> tier_action_from_string(std::string_view text) {
    if (text == "throttle") {
        return Tier::Action::Throttle;
    }
    if (text == "block") {
        return Tier::Action::Block;
    }
    return std::nullopt;
}

}  // namespace ctquota::core
