// Pure pieces of the API: cursors, base64url, body and parameter validation.
#include <doctest/doctest.h>

#include <string>

#include "api/base64.hpp"
#include "api/cursor.hpp"
#include "api/problem.hpp"
#include "api/validation.hpp"
#include "core/calendar.hpp"

using namespace ctquota;
using namespace ctquota::api;

namespace {

// The status an ApiError from `fn` carries, 0 when nothing was thrown.
template <typename Fn>
int status_of(Fn&& fn) {
    try {
        fn();
    } catch (const ApiError& e) {
        return e.problem().status;
    }
    return 0;
}

core::TimePoint day(int y, unsigned m, unsigned d) {
    using namespace std::chrono;
    return core::TimePoint{sys_days{year{y} / month{m} / d}};
}

}  // namespace

TEST_CASE("base64url round-trips every length and refuses other spellings") {
    std::string bytes;
    for (int n = 0; n < 70; ++n) {
        CAPTURE(n);
        const auto text = base64url_encode(bytes);
        CHECK(text.find_first_of("+/=") == std::string::npos);
        CHECK(base64url_decode(text) == bytes);
        bytes += static_cast<char>(n * 37 + 11);
    }
    CHECK(base64url_encode("\xfb\xff") == "-_8");
    const char* rejected[] = {"A", "AB=", "AB+/", "A B", "AB\n", "-_9"};
    for (const auto* text : rejected) {
        CAPTURE(text);
        CHECK_FALSE(base64url_decode(text).has_value());
    }
}

TEST_CASE("cursors decode to what was encoded") {
    const Cursor rows[] = {
        {"subscribers", "cust-42", ""},
        {"usage", "acme/ä \"quoted\"", "2024-05-01"},
        {"subscribers", std::string(200, 'x'), ""},
    };
    for (const auto& c : rows) {
        CAPTURE(c.after);
        const auto text = encode_cursor(c);
        CHECK(text.find_first_of("+/=?&%") == std::string::npos);  // safe in a query string
        CHECK(decode_cursor(text) == c);
    }
}

TEST_CASE("cursors not made by encode_cursor are refused") {
    auto b64 = [](const std::string& s) { return base64url_encode(s); };
    const std::string rows[] = {
        "",
        "garbage!",
        b64("not json"),
        b64("[1,2]"),
        b64(R"({"v":2,"k":"subscribers","a":"x"})"),
        b64(R"({"v":1,"k":"elsewhere","a":"x"})"),
        b64(R"({"v":1,"k":"subscribers","a":""})"),
        b64(R"({"v":1,"k":"subscribers","a":5})"),
        b64(R"({"v":1,"k":"subscribers","a":"x","c":"2024-05-01"})"),
        b64(R"({"v":1,"k":"usage","a":"x"})"),
        b64(R"({"v":1,"k":"usage","a":"x","c":"2024-13-01"})"),
        b64(R"({"v":1,"k":"subscribers","a":"x","extra":1})"),
        b64(R"({"v":1,"k":"subscribers","a":"a\u0001b"})"),
        std::string(3000, 'A'),
    };
    for (const auto& text : rows) {
        CAPTURE(text);
        CHECK_FALSE(decode_cursor(text).has_value());
    }
}

TEST_CASE("a new subscriber body is validated field by field") {
    struct Row {
        const char* description;
        const char* body;
        int status;  // 0 = accepted
        const char* field = "";
    };
    const Row rows[] = {
        {"minimal", R"({"id":"a"})", 0},
        {"with addresses", R"({"id":"a","addresses":["100.64.0.1","2001:db8::/56"]})", 0},
        {"not an object", R"([1])", 422, "(body)"},
        {"missing id", R"({})", 422, "id"},
        {"id not a string", R"({"id":1})", 422, "id"},
        {"empty id", R"({"id":""})", 422, "id"},
        {"control character", R"({"id":"a\tb"})", 422, "id"},
        {"with a plan", R"({"id":"a","plan":"home-100g"})", 0},
        {"unknown field", R"({"id":"a","state":"x"})", 422, "state"},
        {"plan not a name", R"({"id":"a","plan":"Home 100G"})", 422, "plan"},
        {"plan a number", R"({"id":"a","plan":5})", 422, "plan"},
        {"addresses not an array", R"({"id":"a","addresses":{}})", 422, "addresses"},
        {"bad address", R"({"id":"a","addresses":["1.2.3.4","nope"]})", 422, "addresses[1]"},
        {"host bits", R"({"id":"a","addresses":["10.1.2.3/8"]})", 422, "addresses[0]"},
        {"duplicate", R"({"id":"a","addresses":["10.0.0.1","10.0.0.1/32"]})", 422, "addresses[1]"},
        {"truncated", R"({"id":)", 400},
        {"empty", "", 400},
        {"out of range number", R"({"id":1e999})", 400},
    };
    for (const auto& r : rows) {
        CAPTURE(r.description);
        try {
            const auto parsed = parse_new_subscriber(parse_json_object(r.body));
            CHECK(r.status == 0);
            CHECK(parsed.id == "a");
        } catch (const ApiError& e) {
            CHECK(e.problem().status == r.status);
            if (r.status == 422) {
                const auto errors = e.problem().extensions.at("errors");
                CHECK(errors.at(0).at("field") == r.field);
            }
        }
    }
}

TEST_CASE("CIDRs: canonical prefixes pass, anything else says why") {
    std::string why;
    CHECK(parse_cidr("100.64.0.42", &why)->to_string() == "100.64.0.42/32");
    CHECK(parse_cidr("2001:DB8:42::/56", &why)->to_string() == "2001:db8:42::/56");
    for (const char* bad : {"100.64.0.256", "10.0.0.0/33", "::/129", "10.0.0.1/", "/8", "",
                            " 10.0.0.1", "10.0.0.0/-1", "example.com", "10.0.0.1\n"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_cidr(bad, &why).has_value());
    }
    CHECK_FALSE(parse_cidr("10.1.2.3/8", &why).has_value());
    CHECK(why.find("did you mean 10.0.0.0/8") != std::string::npos);
}

TEST_CASE("query parameters: limits, unknown names, repeats, text") {
    CHECK(parse_limit({}, 100, 1000) == 100);
    CHECK(parse_limit({{"limit", "1000"}}, 100, 1000) == 1000);
    for (const char* bad :
         {"0", "-1", "1001", "abc", "1.5", "", " 5", "5 ", "99999999999999999999"}) {
        CAPTURE(bad);
        CHECK(status_of([&] { parse_limit({{"limit", bad}}, 100, 1000); }) == 400);
    }
    CHECK(status_of([] { check_query({{"q", "x"}}, {"q", "limit"}); }) == 0);
    CHECK(status_of([] { check_query({{"sort", "x"}}, {"q"}); }) == 400);
    CHECK(status_of([] { check_query({{"q", "a"}, {"q", "b"}}, {"q"}); }) == 400);
    CHECK(status_of([] { check_query({{"q", "\xff"}}, {"q"}); }) == 400);
}

TEST_CASE("clean text is UTF-8 without control characters") {
    CHECK(is_clean_text("cust-42 ä € 𝄞"));
    for (const char* bad :
         {"a\x01", "\x7f", "\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80"}) {
        CAPTURE(bad);
        CHECK_FALSE(is_clean_text(bad));
    }
    CHECK_FALSE(is_clean_text(std::string("a\0b", 3)));
}

TEST_CASE("cycles: current, or the month holding a date") {
    const auto now = day(2024, 5, 17) + std::chrono::hours(13);
    CHECK(parse_cycle("current", now) == day(2024, 5, 1));
    CHECK(parse_cycle("2024-02-29", now) == day(2024, 2, 1));
    CHECK(parse_cycle("2023-12-01", now) == day(2023, 12, 1));
    for (const char* bad : {"2023-02-29", "2024-13-01", "2024-5-01", "yesterday", "1969-12-31",
                            "2024-05-01T00:00:00Z", "+024-05-01", "", "2024-05-0x"}) {
        CAPTURE(bad);
        CHECK(status_of([&] { parse_cycle(bad, now); }) == 400);
    }
    CHECK(format_date(day(2024, 2, 9)) == "2024-02-09");
    CHECK(core::iso8601_utc(day(2024, 2, 9) + std::chrono::seconds(3723)) ==
          "2024-02-09T01:02:03Z");
}
