// GET /api/v1/subscribers/{id}/events: the policy engine's enforcement events
// of one subscriber (state changes, warnings, new cycles), newest first, in
// pages keyed on the event id.

#include "api/route_helpers.hpp"
#include "api/routes.hpp"
#include "core/calendar.hpp"
#include "store/event_store.hpp"

namespace ctquota::api {
namespace {

constexpr const char* kPath = "/api/v1/subscribers/{id}/events";

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
    return id_page(
        r.query, "events",
        [&](std::int64_t before, std::size_t n) {
            auto lease = s.pool.acquire();
            const auto ref = subscriber_ref(*lease, id);
            return store::EventStore(*lease).page(ref.id, before, n);
        },
        event_json);
}

}  // namespace

void add_event_routes(Router& router, Services& services) {
    auto& s = services;
    router.add({"GET", kPath, Access::Read, false, [&s](const Request& r) { return list(s, r); }});
}

}  // namespace ctquota::api
