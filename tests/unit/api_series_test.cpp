// Pure pieces of the series and address routes: ISO-8601 times, series ranges,
// address bodies.
#include <doctest/doctest.h>

#include <string>

#include "api/address_input.hpp"
#include "api/problem.hpp"
#include "api/series.hpp"
#include "core/calendar.hpp"

using namespace ctquota;
using namespace ctquota::api;
using namespace std::chrono;

namespace {

template <typename Fn>
int status_of(Fn&& fn) {
    try {
        fn();
    } catch (const ApiError& e) {
        return e.problem().status;
    }
    return 0;
}

core::TimePoint at(int y, unsigned m, unsigned d, int h = 0, int min = 0) {
    return core::TimePoint{sys_days{year{y} / month{m} / d}} + hours{h} + minutes{min};
}

std::string iso(core::TimePoint t) {
    return core::iso8601_utc(t);
}

Query query(std::initializer_list<std::pair<const std::string, std::string>> items) {
    return Query(items);
}

}  // namespace

TEST_CASE("ISO-8601 dates and times with a zone parse; others do not") {
    struct Row {
        const char* text;
        const char* expected;  // nullptr: refused
    };
    const Row rows[] = {
        {"2024-05-01", "2024-05-01T00:00:00Z"},
        {"2024-05-01T12:30:00Z", "2024-05-01T12:30:00Z"},
        {"2024-05-01T12:30Z", "2024-05-01T12:30:00Z"},
        {"2024-05-01T12:30:15.250Z", "2024-05-01T12:30:15Z"},
        {"2024-05-01T14:30:00+02:00", "2024-05-01T12:30:00Z"},
        {"2024-05-01T14:30:00 02:00", "2024-05-01T12:30:00Z"},  // '+' decoded as a space
        {"2024-05-01T00:30:00-01:00", "2024-05-01T01:30:00Z"},
        {"2024-05-01T00:00:00+05:30", "2024-04-30T18:30:00Z"},
        {"2024-05-01T12:30:00", nullptr},  // no zone
        {"2024-05-01 12:30:00Z", nullptr},
        {"2024-05-01T24:00:00Z", nullptr},
        {"2024-05-01T12:60:00Z", nullptr},
        {"2024-05-01T12:30:61Z", nullptr},
        {"2024-05-01T12:30:00.Z", nullptr},
        {"2024-05-01T12:30:00.1234567890Z", nullptr},
        {"2024-05-01T12:30:0Z", nullptr},
        {"2024-05-01T12:30:00+2:00", nullptr},
        {"2024-05-01T12:30:00+02", nullptr},
        {"2024-02-30", nullptr},
        {"2024-5-01", nullptr},
        {"yesterday", nullptr},
        {"2300-01-01", nullptr},
        {"1969-12-31T23:00:00Z", nullptr},
        {"", nullptr},
        {"2024-05-01T", nullptr},
        {"2024-05-01T12:30:00Zjunk", nullptr},
    };
    for (const auto& row : rows) {
        CAPTURE(row.text);
        const auto t = parse_timestamp(row.text);
        if (row.expected == nullptr) {
            CHECK_FALSE(t.has_value());
        } else {
            REQUIRE(t.has_value());
            CHECK(iso(*t) == row.expected);
        }
    }
    CHECK(*parse_timestamp("2024-05-01T12:30:15.250Z") - at(2024, 5, 1, 12, 30) == 15250ms);
}

TEST_CASE("series defaults: the last 24 hours, 31 days, 12 cycles, current bucket included") {
    const auto now = at(2024, 3, 10, 15, 20);
    auto r = parse_series_query({}, now);
    CHECK(r.granularity == Granularity::Hour);
    CHECK(iso(r.from) == "2024-03-09T16:00:00Z");
    CHECK(iso(r.to) == "2024-03-10T16:00:00Z");
    CHECK(r.points == 24);
    r = parse_series_query(query({{"granularity", "day"}}), now);
    CHECK(iso(r.from) == "2024-02-09T00:00:00Z");
    CHECK(r.points == 31);
    r = parse_series_query(query({{"granularity", "cycle"}}), now);
    CHECK(iso(r.from) == "2023-04-01T00:00:00Z");
    CHECK(iso(r.to) == "2024-04-01T00:00:00Z");
    CHECK(r.points == 12);
}

TEST_CASE("series ranges round from down and to up to whole buckets") {
    const auto now = at(2024, 3, 10);
    auto r = parse_series_query(
        query({{"from", "2024-01-31T10:15:00Z"}, {"to", "2024-02-01"}, {"granularity", "day"}}),
        now);
    CHECK(iso(r.from) == "2024-01-31T00:00:00Z");
    CHECK(r.points == 1);
    r = parse_series_query(
        query({{"from", "2023-12-15"}, {"to", "2024-02-01T00:00:01Z"}, {"granularity", "cycle"}}),
        now);
    CHECK(iso(r.from) == "2023-12-01T00:00:00Z");
    CHECK(iso(r.to) == "2024-03-01T00:00:00Z");
    CHECK(r.points == 3);
    r = parse_series_query(query({{"to", "2024-01-01"}, {"granularity", "hour"}}), now);
    CHECK(iso(r.from) == "2023-12-31T00:00:00Z");
}

TEST_CASE("series queries: malformed is 400, empty or too long a range 422") {
    const auto now = at(2024, 3, 10);
    const Query bad400[] = {
        query({{"granularity", "week"}}),
        query({{"granularity", ""}}),
        query({{"from", "2024-13-01"}}),
        query({{"to", "tomorrow"}}),
        query({{"to", "9999-12-31"}}),  // past what a TimePoint holds

        query({{"from", "2024-01-01T00:00:00"}}),
        query({{"limit", "5"}}),
    };
    for (const auto& q : bad400) {
        CHECK(status_of([&] { (void)parse_series_query(q, now); }) == 400);
    }
    const Query bad422[] = {
        query({{"from", "2024-03-05"}, {"to", "2024-03-01"}}),
        query({{"from", "2024-03-01"}, {"to", "2024-03-01"}}),
        query({{"from", "2020-01-01"}, {"granularity", "hour"}}),
        query({{"from", "1970-01-01"}, {"to", "2199-12-31"}, {"granularity", "day"}}),
    };
    for (const auto& q : bad422) {
        CHECK(status_of([&] { (void)parse_series_query(q, now); }) == 422);
    }
    CHECK(parse_series_query(query({{"from", "2023-01-01"}, {"granularity", "day"}}), now).points ==
          434);
}

TEST_CASE("a binding body: address required, valid_from optional, nothing else") {
    auto b = parse_new_binding(nlohmann::json::parse(R"({"address": "100.64.0.9"})"));
    CHECK(b.prefix.to_string() == "100.64.0.9/32");
    CHECK_FALSE(b.valid_from.has_value());
    b = parse_new_binding(nlohmann::json::parse(
        R"({"address": "2001:db8::/56", "valid_from": "2024-05-01T12:00:00Z"})"));
    CHECK(iso(*b.valid_from) == "2024-05-01T12:00:00Z");
    const char* bad[] = {
        R"({})",
        R"({"address": 5})",
        R"({"address": "100.64.0.9/24"})",
        R"({"address": "100.64.0.9", "valid_from": "soon"})",
        R"({"address": "100.64.0.9", "valid_from": 1714564800})",
        R"({"address": "100.64.0.9", "valid_until": "2024-05-01"})",
        R"({"addresses": ["100.64.0.9"]})",
    };
    for (const auto* text : bad) {
        CAPTURE(text);
        CHECK(status_of([&] { (void)parse_new_binding(nlohmann::json::parse(text)); }) == 422);
    }
}

TEST_CASE("a subscriber update: addresses and/or plan, id may repeat the path's") {
    const auto parse = [](const char* text) {
        return parse_subscriber_update(nlohmann::json::parse(text), "a");
    };
    CHECK(parse(R"({"addresses": []})").addresses->empty());
    CHECK_FALSE(parse(R"({"addresses": []})").plan_given);
    CHECK(parse(R"({"id": "a", "addresses": ["10.0.0.0/8"]})").addresses->size() == 1);
    const auto plan_only = parse(R"({"plan": "home-100g"})");
    CHECK_FALSE(plan_only.addresses.has_value());
    CHECK(plan_only.plan == "home-100g");
    const auto no_plan = parse(R"({"plan": null})");
    CHECK((no_plan.plan_given && !no_plan.plan.has_value()));
    const char* bad[] = {
        R"({})",
        R"({"id": "b", "addresses": []})",
        R"({"addresses": [], "plan": "Home 100G"})",
        R"({"addresses": [], "plan": 5})",
        R"({"addresses": "10.0.0.1"})",
        R"({"addresses": ["10.0.0.1", "10.0.0.1/32"]})",
        R"({"addresses": [], "state": "normal"})",
    };
    for (const auto* text : bad) {
        CAPTURE(text);
        CHECK(status_of([&] { (void)parse(text); }) == 422);
    }
}
