// /api/v1/subscribers/{id}/topups: add bytes to the allowance until a time
// (default: the end of the current billing cycle), and list them newest
// first. POST honours an Idempotency-Key header: a retry with the same body
// answers 200 with the first top-up and "Idempotent-Replayed: true", never a
// second credit; the same key with another body is a 422. The NOTIFY trigger
// on topups wakes the daemon's policy engine.

#include "api/cursor.hpp"
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
constexpr std::size_t kDefaultLimit = 100;
constexpr std::size_t kMaxLimit = 1000;

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
    std::optional<store::SubscriberQueries::Ref> ref;
    {
        auto lease = s.pool.acquire();
        ref = store::SubscriberQueries(*lease).ref(id);
    }
    if (!ref) {
        throw not_found("no subscriber '" + id + "'");
    }
    const auto expires = input.expires_at.value_or(
        current_cycle(ref->created_at, ref->plan, ref->plan_definition, now).end);
    store::TopUpResult result;
    try {
        auto lease = s.pool.acquire();
        result = store::QuotaStore(*lease).add_topup(
            ref->id, {input.bytes, now, expires, key, key ? input.request_sha256_hex : ""});
    } catch (const store::IdempotencyKeyReused& e) {
        Problem p{422, "idempotency-key-reused", status_title(422), e.what(), {}, {}};
        p.extensions["errors"] =
            json::array({{{"field", "Idempotency-Key"}, {"message", e.what()}}});
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
    const auto limit = parse_limit(r.query, kDefaultLimit, kMaxLimit);
    const auto before = id_cursor(r.query, "topups");
    const auto now = s.clock.now();
    std::vector<store::TopUpRecord> rows;
    {
        auto lease = s.pool.acquire();
        const auto ref = store::SubscriberQueries(*lease).ref(id);
        if (!ref) {
            throw not_found("no subscriber '" + id + "'");
        }
        rows = store::QuotaStore(*lease).topups(ref->id, before, limit + 1);
    }
    json next;
    if (rows.size() > limit) {
        rows.resize(limit);
        next = encode_cursor({"topups", std::to_string(rows.back().id), ""});
    }
    json items = json::array();
    for (const auto& t : rows) {
        auto item = topup_json(id, t);
        item["active"] = t.created_at <= now && now < t.expires_at;
        items.push_back(std::move(item));
    }
    return json_reply(200, {{"items", std::move(items)}, {"next_cursor", next}});
}

}  // namespace

void add_topup_routes(Router& router, Services& services) {
    auto& s = services;
    router.add({"POST", kPath, Access::Write, false, [&s](const Request& r) { return add(s, r); }});
    router.add({"GET", kPath, Access::Read, false, [&s](const Request& r) { return list(s, r); }});
}

}  // namespace ctquota::api
