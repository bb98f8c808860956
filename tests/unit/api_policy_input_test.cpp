// Bodies and parameters of the policy routes (api/policy_input): quota
// overrides, top-ups, Idempotency-Key, plan bodies and id cursors. Each row a
// description, an input and the expected status (0 = accepted) and field.
#include <doctest/doctest.h>

#include "api/cursor.hpp"
#include "api/policy_input.hpp"
#include "api/problem.hpp"
#include "core/calendar.hpp"

using namespace ctquota;
using namespace ctquota::api;

namespace {

const core::TimePoint kNow{std::chrono::sys_days{std::chrono::year{2026} / 11 / 26}};

struct Row {
    const char* description;
    const char* body;
    int status;  // 0 = accepted
    const char* field = "";
};

template <typename Fn>
void check_rows(const std::vector<Row>& rows, Fn&& parse) {
    for (const auto& r : rows) {
        CAPTURE(r.description);
        try {
            parse(nlohmann::json::parse(r.body));
            CHECK(r.status == 0);
        } catch (const ApiError& e) {
            CHECK(e.problem().status == r.status);
            if (r.status == 422) {
                CHECK(e.problem().extensions.at("errors").at(0).at("field") == r.field);
            }
        }
    }
}

}  // namespace

TEST_CASE("quota override bodies") {
    CHECK(parse_quota_body(nlohmann::json::parse(R"({"quota_bytes": 0})")) == 0);
    CHECK(parse_quota_body(nlohmann::json::parse(R"({"quota_bytes": 1000000000000000000})")) ==
          core::kMaxQuotaBytes);
    check_rows({{"negative", R"({"quota_bytes": -1})", 422, "quota_bytes"},
                {"fraction", R"({"quota_bytes": 1.5})", 422, "quota_bytes"},
                {"string", R"({"quota_bytes": "1 GB"})", 422, "quota_bytes"},
                {"null", R"({"quota_bytes": null})", 422, "quota_bytes"},
                {"past 1 EB", R"({"quota_bytes": 1000000000000000001})", 422, "quota_bytes"},
                {"missing", R"({})", 422, "quota_bytes"},
                {"unknown field", R"({"quota_bytes": 1, "x": 1})", 422, "x"}},
               [](const nlohmann::json& j) { (void)parse_quota_body(j); });
}

TEST_CASE("top-up bodies: bytes, an optional future expiry, a canonical hash") {
    const auto a = parse_topup_body(nlohmann::json::parse(R"({"bytes": 5})"), kNow);
    CHECK((a.bytes == 5 && !a.expires_at.has_value()));
    const auto b = parse_topup_body(
        nlohmann::json::parse(R"({"expires_at": "2027-01-01T00:00:00+01:00", "bytes": 5})"), kNow);
    const auto c = parse_topup_body(
        nlohmann::json::parse(R"({ "bytes":5, "expires_at":"2027-01-01T00:00:00+01:00" })"), kNow);
    CHECK(b.request_sha256_hex == c.request_sha256_hex);  // key order and spacing do not matter
    CHECK(b.request_sha256_hex != a.request_sha256_hex);
    CHECK(core::iso8601_utc(*b.expires_at) == "2026-12-31T23:00:00Z");
    check_rows(
        {{"zero", R"({"bytes": 0})", 422, "bytes"},
         {"negative", R"({"bytes": -5})", 422, "bytes"},
         {"missing", R"({})", 422, "bytes"},
         {"past", R"({"bytes": 5, "expires_at": "2026-11-25T00:00:00Z"})", 422, "expires_at"},
         {"no zone", R"({"bytes": 5, "expires_at": "2027-01-01T00:00:00"})", 422, "expires_at"},
         {"date only", R"({"bytes": 5, "expires_at": "2027-01-01"})", 422, "expires_at"},
         {"number", R"({"bytes": 5, "expires_at": 1800000000})", 422, "expires_at"},
         {"after 2199", R"({"bytes": 5, "expires_at": "2200-01-01T00:00:00Z"})", 422, "expires_at"},
         {"unknown", R"({"bytes": 5, "note": "x"})", 422, "note"}},
        [](const nlohmann::json& j) { (void)parse_topup_body(j, kNow); });
}

TEST_CASE("Idempotency-Key: absent, or 1..255 printable ASCII") {
    CHECK_FALSE(idempotency_key("").has_value());
    CHECK(idempotency_key("order-42") == "order-42");
    CHECK(idempotency_key(std::string(255, 'k')).has_value());
    for (const auto& bad : {std::string(256, 'k'), std::string("a\tb"), std::string("\xc3\xa4")}) {
        CHECK_THROWS_AS(idempotency_key(bad), ApiError);
    }
}

TEST_CASE("plan bodies: the path names the plan, read-only fields are ignored") {
    const auto plan = parse_plan_body(
        nlohmann::json::parse(
            R"({"cycle": {"kind": "monthly"}, "quota_bytes": 10, "source": "file", "updated_at": "x"})"),
        "home");
    CHECK((plan.name == "home" && plan.quota_bytes == 10u));
    check_rows({{"name differs", R"({"name": "other", "cycle": {"kind": "monthly"}})", 422, "name"},
                {"bad tier", R"({"cycle": {"kind": "monthly"}, "quota_bytes": 10,
                    "tiers": [{"at_percent": 100, "action": "nuke"}]})",
                 422, "tiers[0].action"}},
               [](const nlohmann::json& j) { (void)parse_plan_body(j, "home"); });
    CHECK_THROWS_AS(
        parse_plan_body(nlohmann::json::parse(R"({"cycle": {"kind": "monthly"}})"), "Not A Name"),
        ApiError);
}

TEST_CASE("id cursors belong to their listing") {
    const Query none;
    CHECK(id_cursor(none, "events") == 0);
    const Query events{{"cursor", encode_cursor({"events", "42", ""})}};
    CHECK(id_cursor(events, "events") == 42);
    CHECK_THROWS_AS(id_cursor(events, "topups"), ApiError);
    CHECK_FALSE(decode_cursor(encode_cursor({"events", "x1", ""})).has_value());
    CHECK_FALSE(decode_cursor(encode_cursor({"topups", "007", ""})).has_value());
}
