// AuthFailureLog: 401s logged at a bounded rate, every one accounted for.
#include <doctest/doctest.h>

#include <regex>

#include "api/auth_failure_log.hpp"

using namespace std::chrono_literals;
using ctquota::api::AuthFailureLog;
using ctquota::core::TimePoint;

namespace {

// The 401s the lines stand for: one per first line plus every summed-up count.
std::uint64_t accounted(const std::vector<std::string>& lines) {
    std::uint64_t n = 0;
    const std::regex more(R"(api: (\d+) (more )?401s)");
    for (const auto& line : lines) {
        std::smatch m;
        if (std::regex_search(line, m, more)) {
            n += std::stoull(m[1]);
        } else if (line.find("api: 401 for ") == 0) {
            ++n;
        }
    }
    return n;
}

void append(std::vector<std::string>& all, const std::vector<std::string>& lines) {
    all.insert(all.end(), lines.begin(), lines.end());
}

}  // namespace

TEST_CASE("auth failures: the first per address and interval, then one summary") {
    AuthFailureLog log(60s);
    const TimePoint t0{1'000'000s};
    const auto first = log.record("192.0.2.7", "GET /api/v1/subscribers", "unknown token", t0);
    REQUIRE(first.size() == 1);
    CHECK(first[0] ==
          "api: 401 for 192.0.2.7 on GET /api/v1/subscribers: unknown token (further 401s from "
          "it within 60s are summed up)");
    std::vector<std::string> all = first;
    for (int i = 1; i < 1000; ++i) {
        append(all, log.record("192.0.2.7", "GET /x", "unknown token", t0 + i * 10ms));
    }
    CHECK(all.size() == 1);
    append(all, log.record("198.51.100.1", "GET /x", "malformed", t0 + 20s));
    CHECK(all.size() == 2);
    // Over: the next 401 from anyone sums up the first address.
    const auto later = log.record("198.51.100.1", "GET /x", "malformed", t0 + 61s);
    REQUIRE(later.size() == 1);
    CHECK(later[0] == "api: 999 more 401s from 192.0.2.7 within 60s of its first");
    append(all, later);
    append(all, log.flush());
    CHECK(all.back() == "api: 1 more 401s from 198.51.100.1 within 60s of its first");
    CHECK(accounted(all) == 1002);
    CHECK(log.flush().empty());
}

TEST_CASE("auth failures: a returning address starts a new interval") {
    AuthFailureLog log(10s);
    const TimePoint t0{5000s};
    log.record("192.0.2.7", "GET /x", "r", t0);
    log.record("192.0.2.7", "GET /x", "r", t0 + 1s);
    const auto again = log.record("192.0.2.7", "GET /x", "r", t0 + 12s);
    REQUIRE(again.size() == 2);
    CHECK(again[0].find("1 more 401s from 192.0.2.7") != std::string::npos);
    CHECK(again[1].find("api: 401 for 192.0.2.7") == 0);
}

TEST_CASE("auth failures: past max_addresses the rest are counted together") {
    AuthFailureLog log(10s, 2);
    const TimePoint t0{5000s};
    std::vector<std::string> all;
    for (int i = 0; i < 50; ++i) {
        append(all, log.record("192.0.2." + std::to_string(i), "GET /x", "r", t0));
    }
    CHECK(all.size() == 2);
    append(all, log.record("192.0.2.0", "GET /x", "r", t0 + 11s));
    CHECK(std::find(all.begin(), all.end(),
                    "api: 48 401s from further addresses (more than 2 at once) not logged one by "
                    "one") != all.end());
    append(all, log.flush());
    CHECK(accounted(all) == 51);
}
