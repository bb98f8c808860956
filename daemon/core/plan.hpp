#pragma once
// A subscriber plan as a plain value: billing cycle, allowance, tiers, free
// windows and destination lists. Also owns the plan's validation (one
// validator for JSON and TOML front ends) and the human units plans are
// written in ("100 GB", "2 Mbit/s", "01:00"). Pure: no I/O beyond the time
// zone lookup validate_plan() asks cycle.hpp for.

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.hpp"

namespace ctquota::core {

struct Rate {
    std::uint64_t down_bps = 0;
    std::uint64_t up_bps = 0;
    bool operator==(const Rate&) const = default;
};

enum class CountedDirections : std::uint8_t { Both, Down, Up };

struct CycleSpec {
    enum class Kind : std::uint8_t { Monthly, EveryNDays };
    Kind kind = Kind::Monthly;
    int day = 1;                          // Monthly: 1..31; clamped to the month's last day
    std::chrono::minutes time_of_day{0};  // Monthly: local time the cycle starts
    std::string time_zone = "UTC";        // IANA name, e.g. "Europe/Berlin"
    int days = 30;  // EveryNDays: length, counted from the subscriber's anchor
    bool operator==(const CycleSpec&) const = default;
};

struct Tier {
    enum class Action : std::uint8_t { Throttle, Block };
    unsigned at_percent = 100;  // of the allowance; tiers ascending
    Action action = Action::Throttle;
    Rate rate;  // Throttle only
    bool operator==(const Tier&) const = default;
};

struct TimeWindow {
    std::chrono::minutes start{0};
    std::chrono::minutes end{0};
    bool operator==(const TimeWindow&) const = default;
};  // local; end <= start wraps midnight

struct Plan {
    std::string name;  // [a-z0-9][a-z0-9._-]{0,62}
    std::string description;
    CycleSpec cycle;
    CountedDirections counts = CountedDirections::Both;
    std::optional<std::uint64_t> quota_bytes;  // nullopt: unlimited (never throttled/blocked)
    std::vector<unsigned> warn_percent;        // ascending, 1..99 typically, each < 1000
    std::vector<Tier> tiers;
    std::vector<TimeWindow> free_windows;  // in cycle.time_zone
    std::vector<Prefix> zero_rated;        // destinations not counted toward the quota
    std::vector<Prefix> always_allowed;    // destinations reachable while blocked
    bool operator==(const Plan&) const = default;
};

// A plan that breaks a rule. `key` is the dotted path of the offending field
// in the JSON shape ("tiers[1].down_bps", "cycle.time_zone"); front ends map
// it back to their own spelling (the TOML loader adds file and line).
class PlanError : public std::runtime_error {
  public:
    PlanError(std::string key_, std::string message_);
    std::string key;
    std::string message;
};

// Limits that make a value "absurd" rather than merely large.
inline constexpr std::uint64_t kMaxQuotaBytes = 1'000'000'000'000'000'000ull;  // 1 EB
// A cycle's allowance: the plan's quota or the override (each <= 1 EB) plus
// the active top-ups (the store refuses a top-up that would take their sum
// past kMaxQuotaBytes). Evaluation clamps to it, so an allowance always fits
// a PostgreSQL bigint and an nft quota (both INT64_MAX) even for rows written
// behind the API's back.
inline constexpr std::uint64_t kMaxAllowanceBytes = 2 * kMaxQuotaBytes;
inline constexpr std::uint64_t kMinRateBps = 1'000;                 // 1 kbit/s
inline constexpr std::uint64_t kMaxRateBps = 1'000'000'000'000ull;  // 1 Tbit/s
inline constexpr unsigned kMaxPercent = 1000;
inline constexpr int kMaxCycleDays = 366;
inline constexpr std::size_t kMaxListEntries = 64;      // warn_percent, tiers, free_windows
inline constexpr std::size_t kMaxPrefixEntries = 4096;  // zero_rated, always_allowed
inline constexpr std::size_t kMaxDescriptionBytes = 1024;

// [a-z0-9][a-z0-9._-]{0,62}
bool valid_plan_name(std::string_view name);

// Every semantic rule: name pattern, known time zone, ranges, ascending
// warn_percent and tiers, a Block tier only last, throttle rates in range,
// no tiers or warnings on an unlimited plan, windows not empty. Throws
// PlanError naming the first offending key.
void validate_plan(const Plan& plan);

// "HH:MM", 00:00..23:59.
std::optional<std::chrono::minutes> parse_time_of_day(std::string_view text);
std::string format_time_of_day(std::chrono::minutes m);

// "100 GB", "1.5GiB", "512 MB", "64 KiB", "10 kB", "42 B", "42". Decimal
// prefixes are powers of 1000, binary ones (KiB...) powers of 1024. The result
// must be a whole number of bytes; nullopt on overflow or anything else.
std::optional<std::uint64_t> parse_byte_quantity(std::string_view text);
// "2 Mbit/s", "500 kbit/s", "1.5 Gbit/s", "64000 bit/s" (decimal) -> bits per second.
std::optional<std::uint64_t> parse_bit_rate(std::string_view text);

// For reasons and logs: "10.0 GB", "512 B" (decimal units, one decimal place).
std::string format_bytes(std::uint64_t bytes);
// "2 Mbit/s", "1.5 Mbit/s", "500 kbit/s", "999 bit/s".
std::string format_bit_rate(std::uint64_t bps);

std::string_view to_string(CountedDirections counts);  // "both" | "down" | "up"
std::optional<CountedDirections> counted_directions_from_string(std::string_view text);
std::string_view to_string(Tier::Action action);  // "throttle" | "block"
std::optional<Tier::Action> tier_action_from_string(std::string_view text);

}  // namespace ctquota::core
