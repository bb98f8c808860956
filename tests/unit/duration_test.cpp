#include <doctest/doctest.h>

#include "core/duration.hpp"

using namespace std::chrono_literals;
using ctquota::core::parse_byte_size;
using ctquota::core::parse_duration;

TEST_CASE("durations: table") {
    struct Row {
        const char* text;
        std::optional<std::chrono::nanoseconds> expected;
    };
    const Row rows[] = {
        {"10s", 10s},           {"500ms", 500ms},
        {"2m", 2min},           {"1h", 1h},
        {"1m30s", 90s},         {"250us", 250us},
        {" 3s ", 3s},           {"0s", 0s},
        {"10", std::nullopt},   {"s", std::nullopt},
        {"10 s", std::nullopt}, {"-1s", std::nullopt},
        {"1.5s", std::nullopt}, {"10parsecs", std::nullopt},
        {"", std::nullopt},     {"99999999999999999999s", std::nullopt},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        CHECK(parse_duration(r.text) == r.expected);
    }
}

TEST_CASE("byte sizes: table") {
    CHECK(parse_byte_size("128MiB") == 128ull << 20);
    CHECK(parse_byte_size("64 KiB") == 64ull << 10);
    CHECK(parse_byte_size("1048576") == 1048576ull);
    CHECK(parse_byte_size("2GiB") == 2ull << 30);
    CHECK_FALSE(parse_byte_size("12 parsecs").has_value());
    CHECK_FALSE(parse_byte_size("MiB").has_value());
    CHECK_FALSE(parse_byte_size("99999999999999GiB").has_value());
}
