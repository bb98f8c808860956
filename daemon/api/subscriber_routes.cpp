// /api/v1/subscribers: create, read (with the current cycle's usage, allowance
// and enforced state), list (filtered by id, plan or state), replace the
// address set and/or the plan (PUT), remove.

#include "api/address_input.hpp"
#include "api/binding_errors.hpp"
#include "api/cursor.hpp"
#include "api/policy_view.hpp"
#include "api/problem.hpp"
#include "api/route_helpers.hpp"
#include "api/routes.hpp"
#include "api/validation.hpp"
#include "core/calendar.hpp"
#include "store/binding_store.hpp"
#include "store/plan_store.hpp"
#include "store/subscriber_queries.hpp"
#include "store/subscriber_store.hpp"

namespace ctquota::api {
namespace {

constexpr const char* kCollection = "/api/v1/subscribers";

using json = nlohmann::ordered_json;

json subscriber_json(const store::SubscriberView& s) {
    return {{"id", s.external_id},
            {"addresses", s.addresses},
            {"created_at", core::iso8601_utc(s.created_at)},
            {"plan", s.plan ? json(*s.plan) : json()}};
}

json detail_json(const store::SubscriberDetail& d, core::TimePoint now) {
    json out = subscriber_json(d.subscriber);
    const auto& u = d.cycle.usage;
    const auto eval = evaluate_detail(d, now);
    out["cycle_start"] = core::iso8601_utc(d.span.start);
    out["cycle_end"] = core::iso8601_utc(d.span.end);
    out["up_bytes"] = u.up.bytes;
    out["down_bytes"] = u.down.bytes;
    out["up_packets"] = u.up.packets;
    out["down_packets"] = u.down.packets;
    out["counted_bytes"] = eval.counted_bytes;
    out["quota_bytes"] = optional_number(eval.allowance_bytes);
    out["remaining_bytes"] = optional_number(eval.remaining_bytes);
    out["updated_at"] = d.cycle.updated_at ? json(core::iso8601_utc(*d.cycle.updated_at)) : json();
    out["state"] = state_json(d);
    return out;
}

json find_or_404(Services& s, const std::string& id, core::TimePoint now) {
    auto lease = s.pool.acquire();
    const auto found = store::SubscriberQueries(*lease).find(id, now, cycle_finder(now));
    if (!found) {
        throw not_found("no subscriber '" + id + "'");
    }
    return detail_json(*found, now);
}

// 422 naming "plan" when it does not exist.
void require_plan(Services& s, const std::optional<std::string>& plan) {
    if (!plan) {
        return;
    }
    auto lease = s.pool.acquire();
    if (!store::PlanStore(*lease).get(*plan)) {
        throw invalid_body({{"plan", "there is no plan '" + *plan +
                                         "' (GET /api/v1/plans lists them; PUT "
                                         "/api/v1/plans/{name} creates one)"}});
    }
}

// Sets the plan of an existing subscriber; a plan that vanished meanwhile is a 422 too.
void assign_plan(Services& s, const std::string& id, const std::optional<std::string>& plan) {
    auto lease = s.pool.acquire();
    try {
        if (!store::PlanStore(*lease).assign(id, plan)) {
            throw not_found("no subscriber '" + id + "'");
        }
    } catch (const store::ConflictError&) {
        throw;
    } catch (const std::invalid_argument& e) {
        throw invalid_body({{"plan", e.what()}});
    }
}

Reply create(Services& s, const Request& r) {
    check_query(r.query, {});
    require_json(r);
    const auto input = parse_new_subscriber(parse_json_object(r.body));
    require_plan(s, input.plan);
    const auto now = s.clock.now();
    {
        auto lease = s.pool.acquire();
        try {
            store::SubscriberStore(*lease).add(input.id, input.addresses, now, s.binding_rules);
        } catch (const store::BindingRefused& e) {
            throw binding_refused(e, "addresses");
        } catch (const store::BindingConflict& e) {
            throw binding_conflict(e, "remove the address from the other subscriber first");
        } catch (const store::ConflictError& e) {
            throw conflict(std::string(e.what()) +
                           "; remove the address from the other subscriber first, or use another "
                           "id");
        }
    }
    // Also without a plan: a removed subscriber coming back keeps its row, not its old plan.
    assign_plan(s, input.id, input.plan);
    Reply reply = json_reply(201, find_or_404(s, input.id, now));
    reply.headers.emplace_back("Location",
                               std::string(kCollection) + "/" + percent_encode(input.id));
    return reply;
}

// Replaces the active address set (bindings kept stay untouched: their
// history does not restart) and/or the plan. The plan is checked first, and
// set after the addresses, so a refused request changes nothing.
Reply replace(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r);
    require_json(r);
    const auto update = parse_subscriber_update(parse_json_object(r.body), id);
    if (update.plan_given) {
        require_plan(s, update.plan);
    }
    const auto now = s.clock.now();
    if (update.addresses) {
        auto lease = s.pool.acquire();
        try {
            if (!store::BindingStore(*lease, s.binding_rules).replace(id, *update.addresses, now)) {
                throw not_found("no subscriber '" + id + "'");
            }
        } catch (const store::BindingRefused& e) {
            throw binding_refused(e, "addresses");
        } catch (const store::BindingConflict& e) {
            throw binding_conflict(e, "remove the address from the other subscriber first");
        }
    }
    if (update.plan_given) {
        assign_plan(s, id, update.plan);
    }
    return json_reply(200, find_or_404(s, id, now));
}

Reply remove(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r);
    auto lease = s.pool.acquire();
    if (!store::SubscriberStore(*lease).remove(id, s.clock.now())) {
        throw not_found("no subscriber '" + id + "' (or it was removed already)");
    }
    return no_content();
}

store::SubscriberFilter read_filter(const Query& query) {
    store::SubscriberFilter filter{query_value(query, "q").value_or(""),
                                   query_value(query, "plan").value_or(""),
                                   query_value(query, "state").value_or(""), ""};
    // "id or address": a q that is an address (or prefix) also finds the
    // subscribers whose bindings overlap it.
    std::string why;
    if (const auto prefix = parse_cidr(filter.q, &why)) {
        filter.address = prefix->to_string();
    }
    if (query_value(query, "plan") && !core::valid_plan_name(filter.plan)) {
        throw bad_request("plan must be a plan name ([a-z0-9][a-z0-9._-]{0,62}), got '" +
                          filter.plan.substr(0, 64) + "'");
    }
    if (query_value(query, "state") && !core::state_from_string(filter.state)) {
        throw bad_request("state must be normal, throttled or blocked, got '" +
                          filter.state.substr(0, 32) + "'");
    }
    return filter;
}

Reply list(Services& s, const Request& r) {
    check_query(r.query, {"q", "plan", "state", "limit", "cursor"});
    return keyset_page(
        r.query, "subscribers",
        [](const Query& query, const char* kind) {
            return cursor_after(query, kind, "the beginning");
        },
        [&](const std::string& after, std::size_t n) {
            // Read here, after limit and cursor, whose 400s come first.
            const auto filter = read_filter(r.query);
            auto lease = s.pool.acquire();
            return store::SubscriberQueries(*lease).page(filter, after, n, s.clock.now());
        },
        [](const store::SubscriberView& row) { return row.external_id; }, subscriber_json);
}

}  // namespace

void add_subscriber_routes(Router& router, Services& services) {
    auto& s = services;
    const std::string item = std::string(kCollection) + "/{id}";
    router.add(
        {"GET", kCollection, Access::Read, false, [&s](const Request& r) { return list(s, r); }});
    router.add({"POST", kCollection, Access::Write, false,
                [&s](const Request& r) { return create(s, r); }});
    router.add({"GET", item, Access::Read, false, [&s](const Request& r) {
                    return json_reply(200, find_or_404(s, subscriber_path_id(r), s.clock.now()));
                }});
    router.add(
        {"PUT", item, Access::Write, false, [&s](const Request& r) { return replace(s, r); }});
    router.add(
        {"DELETE", item, Access::Write, false, [&s](const Request& r) { return remove(s, r); }});
}

}  // namespace ctquota::api
