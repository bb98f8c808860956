// /api/v1/plans: list, read, and create or replace (PUT) the plans clients may
// assign. Plans from policies/*.toml (source "file") are read-only here: a PUT
// of one is a 409 naming its file. The NOTIFY trigger on plans wakes the
// daemon's policy engine after a change.

#include "api/policy_input.hpp"
#include "api/problem.hpp"
#include "api/route_helpers.hpp"
#include "api/routes.hpp"
#include "api/validation.hpp"
#include "core/calendar.hpp"
#include "core/plan_json.hpp"
#include "store/plan_store.hpp"

namespace ctquota::api {
namespace {

constexpr const char* kCollection = "/api/v1/plans";

using json = nlohmann::ordered_json;

// The plan JSON (canonical: plan_to_json of the parsed definition) plus the
// read-only source, source_file and updated_at.
json plan_json(const store::PlanRecord& p) {
    nlohmann::json definition;
    try {
        definition =
            core::plan_to_json(core::plan_from_json(nlohmann::json::parse(p.definition), p.name));
    } catch (const std::exception&) {
        // A stored definition that no longer validates is still shown as stored.
        definition = nlohmann::json::parse(p.definition, nullptr, false);
    }
    json out = {{"name", p.name}};
    for (const auto& [key, value] : definition.items()) {
        if (key != "name") {
            out[key] = value;
        }
    }
    out["source"] = store::to_string(p.source);
    out["source_file"] = p.source_file ? json(*p.source_file) : json();
    out["updated_at"] = core::iso8601_utc(p.updated_at);
    return out;
}

const std::string& plan_path_name(const Request& r) {
    check_query(r.query, {});
    const auto& name = r.param("name");
    return name;
}

Reply list(Services& s, const Request& r) {
    check_query(r.query, {});
    std::vector<store::PlanRecord> rows;
    {
        auto lease = s.pool.acquire();
        rows = store::PlanStore(*lease).list();
    }
    json items = json::array();
    for (const auto& p : rows) {
        items.push_back(plan_json(p));
    }
    return json_reply(200, {{"items", std::move(items)}});
}

json get_or_404(Services& s, const std::string& name) {
    std::optional<store::PlanRecord> found;
    if (core::valid_plan_name(name)) {
        auto lease = s.pool.acquire();
        found = store::PlanStore(*lease).get(name);
    }
    if (!found) {
        throw not_found("no plan '" + name.substr(0, 64) + "' (GET /api/v1/plans lists them)");
    }
    return plan_json(*found);
}

Reply put(Services& s, const Request& r) {
    const auto& name = plan_path_name(r);
    require_json(r);
    const auto plan = parse_plan_body(parse_json_object(r.body), name);
    const auto definition = core::plan_to_json(plan).dump();
    store::PlanStore::Upsert result{};
    try {
        auto lease = s.pool.acquire();
        result = store::PlanStore(*lease).upsert(name, definition, store::PlanSource::Api);
    } catch (const store::PlanFromFileError& e) {
        auto error = conflict(e.what());
        Problem p = error.problem();
        p.type = "plan-from-file";
        p.extensions["source_file"] = e.file();
        throw ApiError(std::move(p));
    }
    const bool created = result == store::PlanStore::Upsert::Created;
    Reply reply = json_reply(created ? 201 : 200, get_or_404(s, name));
    if (created) {
        reply.headers.emplace_back("Location", std::string(kCollection) + "/" + name);
    }
    return reply;
}

}  // namespace

void add_plan_routes(Router& router, Services& services) {
    auto& s = services;
    const std::string item = std::string(kCollection) + "/{name}";
    router.add(
        {"GET", kCollection, Access::Read, false, [&s](const Request& r) { return list(s, r); }});
    router.add({"GET", item, Access::Read, false, [&s](const Request& r) {
                    return json_reply(200, get_or_404(s, plan_path_name(r)));
                }});
    router.add({"PUT", item, Access::Write, false, [&s](const Request& r) { return put(s, r); }});
}

}  // namespace ctquota::api
