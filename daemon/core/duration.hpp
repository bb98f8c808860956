#pragma once
// Durations written as in the config: "10s", "500ms", "2m", "1h", "1m30s".

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace ctquota::core {

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);
std::string format_duration(std::chrono::nanoseconds d);

// "128MiB", "64 KiB", "1048576"; nullopt on anything else.
std::optional<std::uint64_t> parse_byte_size(std::string_view text);

// `s` without leading and trailing white space.
std::string_view trim(std::string_view s);

}  // namespace ctquota::core
