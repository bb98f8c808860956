// GET /api/v1/subscribers/{id}/events: the policy engine's enforcement events
// of one subscriber (state changes, warnings, new cycles), newest first, in
// pages keyed on the event id.

#include "api/cursor.hpp"
#include "api/policy_input.hpp"
#include "api/problem.hpp"
#include "api/route_helpers.hpp"
#include "api/routes.hpp"
#include "api/validation.hpp"
#include "core/calendar.hpp"
#include "store/event_store.hpp"
#include "store/subscriber_queries.hpp"

namespace ctquota::api {
namespace {

constexpr const char* kPath = "/api/v1/subscribers/{id}/events";
constexpr std::size_t kDefaultLimit = 100;
constexpr std::size_t kMaxLimit = 1000;

using json = nlohmann::ordered_json;

json optional_text(const std::optional<std::string>& v) {
    return v ? json(*v) : json();
}

json optional_bytes(const std::optional<std::uint64_t>& v) {
    return v ? json(*v) : json();
}

json event_json(const store::EventRecord& e) {
    return {{"id", e.id},
            {"at", core::iso8601_utc(e.at)},
            {"kind", e.kind},
            {"from_state", optional_text(e.from_state)},
            {"to_state", optional_text(e.to_state)},
            {"reason", e.reason},
            {"counted_bytes", optional_bytes(e.counted_bytes)},
            {"allowance_bytes", optional_bytes(e.allowance_bytes)},
            {"detail", json::parse(e.detail_json, nullptr, false)}};
}

Reply list(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r, {"limit", "cursor"});
    const auto limit = parse_limit(r.query, kDefaultLimit, kMaxLimit);
    const auto before = id_cursor(r.query, "events");
    std::vector<store::EventRecord> rows;
    {
        auto lease = s.pool.acquire();
        const auto ref = store::SubscriberQueries(*lease).ref(id);
        if (!ref) {
            throw not_found("no subscriber '" + id + "'");
        }
        rows = store::EventStore(*lease).page(ref->id, before, limit + 1);
    }
    json next;
    if (rows.size() > limit) {
        rows.resize(limit);
        next = encode_cursor({"events", std::to_string(rows.back().id), ""});
    }
    json items = json::array();
    for (const auto& e : rows) {
        items.push_back(event_json(e));
    }
    return json_reply(200, {{"items", std::move(items)}, {"next_cursor", next}});
}

}  // namespace

void add_event_routes(Router& router, Services& services) {
    auto& s = services;
    router.add({"GET", kPath, Access::Read, false, [&s](const Request& r) { return list(s, r); }});
}

}  // namespace ctquota::api
