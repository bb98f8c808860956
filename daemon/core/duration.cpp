#include "core/duration.hpp"

#include <cctype>
#include <charconv>
#include <cstdint>
#include <utility>

namespace ctquota::core {
namespace {

struct Unit {
    std::string_view name;
    std::int64_t nanos;
};

constexpr Unit kDurationUnits[] = {
    {"ns", 1},
    {"us", 1'000},
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
    {"d", 86'400'000'000'000},
};

// Reads a leading unsigned integer; returns the rest.
std::optional<std::pair<std::uint64_t, std::string_view>> leading_number(std::string_view s) {
    std::uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || ptr == s.data()) {
        return std::nullopt;
    }
    return std::pair{value, s.substr(static_cast<std::size_t>(ptr - s.data()))};
}

}  // namespace

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
        s.remove_prefix(1);
    }
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
        s.remove_suffix(1);
    }
    return s;
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
    auto rest = trim(text);
    if (rest.empty()) {
        return std::nullopt;
    }
    std::int64_t total = 0;
    while (!rest.empty()) {
        auto number = leading_number(rest);
        if (!number) {
            return std::nullopt;
        }
        rest = number->second;
        std::size_t unit_len = 0;
        while (unit_len < rest.size() && std::isalpha(static_cast<unsigned char>(rest[unit_len]))) {
            ++unit_len;
        }
        const auto unit_name = rest.substr(0, unit_len);
        rest.remove_prefix(unit_len);
        const Unit* unit = nullptr;
        for (const auto& u : kDurationUnits) {
            if (u.name == unit_name) {
                unit = &u;
            }
        }
        if (unit == nullptr ||
            number->first > static_cast<std::uint64_t>(INT64_MAX / unit->nanos)) {
            return std::nullopt;
        }
        total += static_cast<std::int64_t>(number->first) * unit->nanos;
    }
    return std::chrono::nanoseconds(total);
}

std::string format_duration(std::chrono::nanoseconds d) {
    const auto ns = d.count();
    if (ns % 1'000'000'000 == 0) {
        return std::to_string(ns / 1'000'000'000) + "s";
    }
    if (ns % 1'000'000 == 0) {
        return std::to_string(ns / 1'000'000) + "ms";
    }
    return std::to_string(ns) + "ns";
}

std::optional<std::uint64_t> parse_byte_size(std::string_view text) {
    auto number = leading_number(trim(text));
    if (!number) {
        return std::nullopt;
    }
    const auto unit = trim(number->second);
    std::uint64_t scale = 0;
    if (unit.empty() || unit == "B") {
        scale = 1;
    } else if (unit == "KiB" || unit == "K") {
        scale = 1ull << 10;
    } else if (unit == "MiB" || unit == "M") {
        scale = 1ull << 20;
    } else if (unit == "GiB" || unit == "G") {
        scale = 1ull << 30;
    } else {
        return std::nullopt;
    }
    if (number->first > UINT64_MAX / scale) {
        return std::nullopt;
    }
    return number->first * scale;
}

}  // namespace ctquota::core
