// /api/v1/subscribers/{id}/topups: add bytes to the allowance until a time
// (default: the end of the current billing cycle), and list them newest
// first. POST honours an Idempotency-Key header: a retry with the same body
// answers 200 with the first top-up and "Idempotent-Replayed: true", never a
// second credit; the same key with another body is a 422, and so is a top-up
// that would take the active ones past 1 EB (core::kMaxAllowanceBytes). The NOTIFY trigger
// on topups wakes the daemon's policy engine.

#include "api/policy_input.hpp"
#include "api/policy_view.hpp"
#include "api/problem.hpp"
#include "api/route_helpers.hpp"
#include "api/routes.hpp"
#include "api/validation.hpp"
#include "core/calendar.hpp"
#include "store/quota_store.hpp"

namespace ctquota::api {
namespace {

constexpr const char* kPath = "/api/v1/subscribers/{id}/topups";

using json = nlohmann::ordered_json;

json topup_json(const std::string& subscriber, const store::TopUpRecord& t) {
    return {{"id", t.id},
            {"subscriber", subscriber},
            {"bytes", t.bytes},
            {"created_at", core::iso8601_utc(t.created_at)},
            {"expires_at", core::iso8601_utc(t.expires_at)},
            {"idempotency_key", t.idempotency_key ? json(*t.idempotency_key) : json()}};
}

Reply add(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r);
    require_json(r);
    const auto key = idempotency_key(r.header("idempotency-key"));
    const auto now = s.clock.now();
    const auto input = parse_topup_body(parse_json_object(r.body), now);
    const auto ref = subscriber_ref(*s.pool.acquire(), id);
    const auto expires = input.expires_at.value_or(
        current_cycle(ref.created_at, ref.plan, ref.plan_definition, now).end);
    store::TopUpResult result;
    try {
        auto lease = s.pool.acquire();
        result = store::QuotaStore(*lease).add_topup(
            ref.id, {input.bytes, now, expires, key, key ? input.request_sha256_hex : ""});
    } catch (const store::IdempotencyKeyReused& e) {
        Problem p{422, "idempotency-key-reused", status_title(422), e.what(), {}, {}};
        p.extensions["errors"] =
            json::array({{{"field", "Idempotency-Key"}, {"message", e.what()}}});
        throw ApiError(std::move(p));
    } catch (const store::AllowanceLimitExceeded& e) {
        Problem p{422, "allowance-limit", status_title(422), e.what(), {}, {}};
        p.extensions["errors"] = json::array({{{"field", "bytes"}, {"message", e.what()}}});
        throw ApiError(std::move(p));
    }
    Reply reply = json_reply(result.replayed ? 200 : 201, topup_json(id, result.topup));
    if (result.replayed) {
        reply.headers.emplace_back("Idempotent-Replayed", "true");
    }
    return reply;
}

Reply list(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r, {"limit", "cursor"});
    const auto now = s.clock.now();
    return id_page(
        r.query, "topups",
        [&](std::int64_t before, std::size_t n) {
            auto lease = s.pool.acquire();
            const auto ref = subscriber_ref(*lease, id);
            return store::QuotaStore(*lease).topups(ref.id, before, n);
        },
        [&](const store::TopUpRecord& t) {
            auto item = topup_json(id, t);
            item["active"] = t.created_at <= now && now < t.expires_at;
            return item;
        });
}

}  // namespace

void add_topup_routes(Router& router, Services& services) {
    auto& s = services;
    router.add({"POST", kPath, Access::Write, false, [&s](const Request& r) { return add(s, r); }});
    router.add({"GET", kPath, Access::Read, false, [&s](const Request& r) { return list(s, r); }});
}

}  // namespace ctquota::api
