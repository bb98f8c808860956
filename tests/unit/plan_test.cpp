#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/plan.hpp"

using namespace ctquota::core;
using namespace std::chrono_literals;

TEST_CASE("byte quantities in decimal and binary units") {
    struct Row {
        const char* text;
        std::optional<std::uint64_t> bytes;
    };
    const Row rows[] = {
        {"100 GB", 100'000'000'000ull},
        {"100GB", 100'000'000'000ull},
        {"1.5 GB", 1'500'000'000ull},
        {"10 kB", 10'000},
        {"10 KB", 10'000},
        {"2 MB", 2'000'000},
        {"1 TB", 1'000'000'000'000ull},
        {"64 KiB", 65'536},
        {"1 GiB", 1ull << 30},
        {"1.5 GiB", 3ull << 29},
        {"2 TiB", 2ull << 40},
        {"42 B", 42},
        {"42", 42},
        {" 7 MB ", 7'000'000},
        {"0 GB", 0},
        {"1.5 B", std::nullopt},  // not a whole number of bytes
        {"1.2345 kB", std::nullopt},
        {"100 Gb", std::nullopt},  // bits? ambiguous: rejected
        {"100 gigabytes", std::nullopt},
        {"-1 GB", std::nullopt},
        {"GB", std::nullopt},
        {"1. GB", std::nullopt},
        {".5 GB", std::nullopt},
        {"", std::nullopt},
        {"99999999999999999999 B", std::nullopt},
        {"20 EB", std::nullopt},  // overflows uint64
    };
    for (const auto& row : rows) {
        CAPTURE(row.text);
        CHECK(parse_byte_quantity(row.text) == row.bytes);
    }
}

TEST_CASE("bit rates in decimal units") {
    struct Row {
        const char* text;
        std::optional<std::uint64_t> bps;
    };
    const Row rows[] = {
        {"2 Mbit/s", 2'000'000},  {"500 kbit/s", 500'000},     {"1.5 Gbit/s", 1'500'000'000},
        {"64000 bit/s", 64'000},  {"64000", 64'000},           {"20Mbit/s", 20'000'000},
        {"2 Mbps", std::nullopt}, {"2 MB/s", std::nullopt},    {"2 Mbit", std::nullopt},
        {"fast", std::nullopt},   {"0.5 bit/s", std::nullopt},
    };
    for (const auto& row : rows) {
        CAPTURE(row.text);
        CHECK(parse_bit_rate(row.text) == row.bps);
    }
}

TEST_CASE("formatting bytes, rates and times") {
    CHECK(format_bytes(10'000'000'000ull) == "10.0 GB");
    CHECK(format_bytes(100'000'000'000ull) == "100.0 GB");
    CHECK(format_bytes(1'550'000'000ull) == "1.5 GB");
    CHECK(format_bytes(999) == "999 B");
    CHECK(format_bytes(1'000'000'000'000ull) == "1.0 TB");
    CHECK(format_bit_rate(2'000'000) == "2 Mbit/s");
    CHECK(format_bit_rate(500'000) == "500 kbit/s");
    CHECK(format_bit_rate(1'500'000) == "1.5 Mbit/s");
    CHECK(format_bit_rate(999) == "999 bit/s");
    CHECK(format_time_of_day(0min) == "00:00");
    CHECK(format_time_of_day(7h + 5min) == "07:05");
    CHECK(format_time_of_day(23h + 59min) == "23:59");
}

TEST_CASE("times of day are HH:MM") {
    CHECK(parse_time_of_day("00:00") == 0min);
    CHECK(parse_time_of_day("01:00") == 1h);
    CHECK(parse_time_of_day("23:59") == 23h + 59min);
    for (const char* bad :
         {"24:00", "1:00", "01:60", "01-00", "0100", "01:00:00", "", "aa:bb", "+1:00", " 1:00"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_time_of_day(bad));
    }
}

TEST_CASE("plan names") {
    const std::vector<std::string> good_names = {"home-100g", "a", "0", "biz.fup_2",
                                                 std::string(63, 'x')};
    for (const auto& good : good_names) {
        CAPTURE(good);
        CHECK(valid_plan_name(good));
    }
    const std::vector<std::string> bad_names = {
        "", "Home", "-home", ".home", "_x", "home 100", "home/100", "ü", std::string(64, 'x')};
    for (const auto& bad : bad_names) {
        CAPTURE(bad);
        CHECK_FALSE(valid_plan_name(bad));
    }
}

TEST_CASE("enum spellings round-trip") {
    for (auto c : {CountedDirections::Both, CountedDirections::Down, CountedDirections::Up}) {
        CHECK(counted_directions_from_string(to_string(c)) == c);
    }
    for (auto a : {Tier::Action::Throttle, Tier::Action::Block}) {
        CHECK(tier_action_from_string(to_string(a)) == a);
    }
    CHECK_FALSE(counted_directions_from_string("Both"));
    CHECK_FALSE(tier_action_from_string("drop"));
}

TEST_CASE("validate_plan names the offending key") {
    Plan base;
    base.name = "p";
    base.quota_bytes = 1000;
    base.tiers = {Tier{100, Tier::Action::Throttle, Rate{2'000'000, 1'000'000}}};
    CHECK_NOTHROW(validate_plan(base));

    struct Row {
        const char* what;
        void (*change)(Plan&);
        const char* key;
    };
    const Row rows[] = {
        {"bad name", [](Plan& p) { p.name = "P"; }, "name"},
        {"zone", [](Plan& p) { p.cycle.time_zone = "Nowhere/Town"; }, "cycle.time_zone"},
        {"day 0", [](Plan& p) { p.cycle.day = 0; }, "cycle.day"},
        {"time 24h", [](Plan& p) { p.cycle.time_of_day = 24h; }, "cycle.time"},
        {"days 0",
         [](Plan& p) {
             p.cycle.kind = CycleSpec::Kind::EveryNDays;
             p.cycle.days = 0;
         },
         "cycle.days"},
        {"unlimited with tiers", [](Plan& p) { p.quota_bytes.reset(); }, "tiers"},
        {"rate zero", [](Plan& p) { p.tiers[0].rate.up_bps = 0; }, "tiers[0].up_bps"},
        {"block with rate", [](Plan& p) { p.tiers[0].action = Tier::Action::Block; },
         "tiers[0].down_bps"},
        {"empty window",
         [](Plan& p) {
             p.free_windows = {TimeWindow{1h, 1h}};
         },
         "free_windows[0].end"},
        {"warn 0", [](Plan& p) { p.warn_percent = {0}; }, "warn_percent[0]"},
        {"quota absurd", [](Plan& p) { p.quota_bytes = kMaxQuotaBytes + 1; }, "quota_bytes"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.what);
        auto plan = base;
        row.change(plan);
        try {
            validate_plan(plan);
            FAIL("accepted");
        } catch (const PlanError& e) {
            CHECK(e.key == row.key);
        }
    }
}
