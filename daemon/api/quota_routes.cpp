// /api/v1/subscribers/{id}/quota: the quota override of the subscriber's
// current billing cycle (it replaces the plan's quota for that cycle only;
// top-ups still add to it). The NOTIFY trigger on quota_overrides wakes the
// daemon's policy engine after a change.

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

constexpr const char* kPath = "/api/v1/subscribers/{id}/quota";

using json = nlohmann::ordered_json;

store::SubscriberDetail find_or_404(Services& s, const std::string& id, core::TimePoint now) {
    auto lease = s.pool.acquire();
    auto found = store::SubscriberQueries(*lease).find(id, now, cycle_finder(now));
    if (!found) {
        throw not_found("no subscriber '" + id + "'");
    }
    return std::move(*found);
}

json quota_json(const store::SubscriberDetail& d, core::TimePoint now) {
    std::optional<std::uint64_t> plan_quota;
    if (d.subscriber.plan && d.plan_definition) {
        if (const auto plan = stored_plan(*d.subscriber.plan, *d.plan_definition)) {
            plan_quota = plan->quota_bytes;
        }
    }
    std::vector<core::TopUp> topups;
    for (const auto& t : d.topups) {
        topups.push_back({t.bytes, t.created_at, t.expires_at});
    }
    const auto topup_bytes = core::active_topup_bytes(topups, now);  // saturating
    const auto eval = evaluate_detail(d, now);
    return {{"subscriber", d.subscriber.external_id},
            {"plan", d.subscriber.plan ? json(*d.subscriber.plan) : json()},
            {"cycle_start", core::iso8601_utc(d.span.start)},
            {"cycle_end", core::iso8601_utc(d.span.end)},
            {"quota_bytes", optional_number(d.quota_override)},
            {"plan_quota_bytes", optional_number(plan_quota)},
            {"topup_bytes", topup_bytes},
            {"allowance_bytes", optional_number(eval.allowance_bytes)}};
}

Reply get(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r);
    const auto now = s.clock.now();
    return json_reply(200, quota_json(find_or_404(s, id, now), now));
}

Reply put(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r);
    require_json(r);
    const auto bytes = parse_quota_body(parse_json_object(r.body));
    const auto now = s.clock.now();
    const auto before = find_or_404(s, id, now);
    bool created = false;
    {
        auto lease = s.pool.acquire();
        created = store::QuotaStore(*lease).set_override(before.id, before.span.start, bytes);
    }
    return json_reply(created ? 201 : 200, quota_json(find_or_404(s, id, now), now));
}

Reply remove(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r);
    const auto now = s.clock.now();
    const auto d = find_or_404(s, id, now);
    auto lease = s.pool.acquire();
    if (!store::QuotaStore(*lease).delete_override(d.id, d.span.start)) {
        throw not_found("subscriber '" + id + "' has no quota override in the cycle starting " +
                        core::iso8601_utc(d.span.start));
    }
    return no_content();
}

}  // namespace

void add_quota_routes(Router& router, Services& services) {
    auto& s = services;
    router.add({"GET", kPath, Access::Read, false, [&s](const Request& r) { return get(s, r); }});
    router.add({"PUT", kPath, Access::Write, false, [&s](const Request& r) { return put(s, r); }});
    router.add(
        {"DELETE", kPath, Access::Write, false, [&s](const Request& r) { return remove(s, r); }});
}

}  // namespace ctquota::api
