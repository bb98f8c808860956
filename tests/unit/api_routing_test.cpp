// Pure pieces of the API: routing, problem bodies, tokens, authentication.
#include <doctest/doctest.h>

#include <map>
#include <sstream>

#include "api/auth.hpp"
#include "api/problem.hpp"
#include "api/router.hpp"
#include "api/tokens.hpp"
#include "metrics/metrics.hpp"

using namespace ctquota;
using namespace ctquota::api;
using namespace std::chrono_literals;

namespace {

Router sample_router() {
    Router r;
    const auto ok = [](const Request&) { return no_content(); };
    r.add({"GET", "/api/v1/subscribers", Access::Read, false, ok});
    r.add({"POST", "/api/v1/subscribers", Access::Write, false, ok});
    r.add({"GET", "/api/v1/subscribers/{id}", Access::Read, false, ok});
    r.add({"DELETE", "/api/v1/subscribers/{id}", Access::Write, false, ok});
    return r;
}

template <typename Fn>
Problem problem_of(Fn&& fn) {
    try {
        fn();
    } catch (const ApiError& e) {
        return e.problem();
    }
    FAIL("expected an ApiError");
    return {};
}

}  // namespace

TEST_CASE("routes match on raw segments and decode captures") {
    const auto router = sample_router();
    auto m = router.match("GET", "/api/v1/subscribers/acme%2F%C3%A4%201");
    CHECK(m.route->pattern == "/api/v1/subscribers/{id}");
    CHECK(m.params.at("id") == "acme/ä 1");
    CHECK(router.match("HEAD", "/api/v1/subscribers").route->method == "GET");
    CHECK(router.match("DELETE", "/api/v1/subscribers/x").route->access == Access::Write);
}

TEST_CASE("unknown paths are 404, other methods 405 with Allow, broken escapes 400") {
    const auto router = sample_router();
    for (const char* path : {"/", "/api/v1", "/api/v1/subscribers/", "/api/v1/subscribers/x/y",
                             "/api/v2/subscribers", "/api/v1/subscribers//"}) {
        CAPTURE(path);
        CHECK(problem_of([&] { (void)router.match("GET", path); }).status == 404);
    }
    const auto p = problem_of([&] { (void)router.match("PATCH", "/api/v1/subscribers"); });
    CHECK(p.status == 405);
    CHECK(p.headers.at(0) == std::pair<std::string, std::string>{"Allow", "GET, HEAD, POST"});
    CHECK(problem_of([&] { (void)router.match("PUT", "/api/v1/subscribers/x"); }).status == 405);
    for (const char* path :
         {"/api/v1/subscribers/%ZZ", "/api/v1/subscribers/%4", "/api/v1/subscribers/%"}) {
        CAPTURE(path);
        CHECK(problem_of([&] { (void)router.match("GET", path); }).status == 400);
    }
}

TEST_CASE("problem bodies carry type, title, status, detail first, then extensions") {
    const auto p = invalid_body({{"id", "must not be empty"}}).problem();
    const auto j = problem_json(p);
    CHECK(j.begin().key() == "type");
    CHECK(j["type"] == "urn:ctquota:problem:invalid-body");
    CHECK(j["status"] == 422);
    CHECK(j["errors"][0]["field"] == "id");
    CHECK(unauthorized("x").problem().headers.at(0).first == "WWW-Authenticate");
    CHECK(unavailable("x").problem().headers.at(0).first == "Retry-After");
}

TEST_CASE("tokens: format, hash, bearer header") {
    const auto a = generate_token();
    const auto b = generate_token();
    CHECK(a != b);
    CHECK(is_token_syntax(a));
    CHECK(a.size() == 47);
    CHECK_FALSE(is_token_syntax("ctq_short"));
    CHECK_FALSE(is_token_syntax("xyz_" + a.substr(4)));
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(bearer_token("Bearer ctq_x") == "ctq_x");
    CHECK(bearer_token("bEaReR   ctq_x  ") == "ctq_x");
    CHECK_FALSE(bearer_token("Basic YTpi").has_value());
    CHECK_FALSE(bearer_token("Bearer").has_value());
}

TEST_CASE("authentication: 401 for missing and unknown tokens, 403 for billing writes") {
    const auto admin = generate_token();
    const auto billing = generate_token();
    std::map<std::string, Principal> known = {
        {sha256_hex(admin), Principal{1, "ops", Role::Admin}},
        {sha256_hex(billing), Principal{2, "erp", Role::Billing}},
    };
    int lookups = 0;
    core::ManualClock clock(core::TimePoint{});
    Authenticator auth(
        [&](const std::string& hash) -> std::optional<Principal> {
            ++lookups;
            const auto it = known.find(hash);
            return it == known.end() ? std::nullopt : std::optional<Principal>(it->second);
        },
        clock, 10s);
    const auto status = [&](const std::string& header, Access access) {
        try {
            auth.authenticate(header, access);
            return 200;
        } catch (const ApiError& e) {
            return e.problem().status;
        }
    };
    CHECK(status("", Access::Read) == 401);
    CHECK(status("Basic YTpi", Access::Read) == 401);
    CHECK(status("Bearer not-a-token", Access::Read) == 401);
    CHECK(status("Bearer " + generate_token(), Access::Read) == 401);
    CHECK(status("Bearer " + billing, Access::Read) == 200);
    CHECK(status("Bearer " + billing, Access::Write) == 403);
    CHECK(status("Bearer " + admin, Access::Write) == 200);
    CHECK(auth.authenticate("Bearer " + admin, Access::Read).name == "ops");

    SUBCASE("answers are cached until the TTL passes, so revocation takes effect then") {
        const int before = lookups;
        known.erase(sha256_hex(admin));
        CHECK(status("Bearer " + admin, Access::Read) == 200);
        CHECK(lookups == before);
        clock.advance(11s);
        CHECK(status("Bearer " + admin, Access::Read) == 401);
        CHECK(lookups == before + 1);
    }
}

TEST_CASE("HTTP metrics count by route and code, with a latency histogram per route") {
    metrics::HttpMetrics m;
    m.observe("/healthz", 200, 300us);
    m.observe("/healthz", 200, 2ms);
    m.observe("unmatched", 404, 50us);
    std::ostringstream out;
    m.render(out);
    const auto text = out.str();
    CHECK(text.find("ctquota_http_requests_total{route=\"/healthz\",code=\"200\"} 2") !=
          std::string::npos);
    CHECK(text.find("ctquota_http_requests_total{route=\"unmatched\",code=\"404\"} 1") !=
          std::string::npos);
    CHECK(text.find("ctquota_http_request_seconds_bucket{route=\"/healthz\",le=\"0.001\"} 1") !=
          std::string::npos);
    CHECK(text.find("ctquota_http_request_seconds_count{route=\"/healthz\"} 2") !=
          std::string::npos);
}
