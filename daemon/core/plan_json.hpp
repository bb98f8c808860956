#pragma once
// Plans as JSON, the shape the API and the database (plans.definition) use.
// Lives in its own target, ctquota_plan_json (core + nlohmann_json), so that
// ctquota_core links no JSON library.
//
// {"name":"home-100g","description":"…",
//  "cycle":{"kind":"monthly","day":1,"time":"00:00","time_zone":"Europe/Berlin"},
//  "counts":"both","quota_bytes":100000000000,"warn_percent":[80,95],
//  "tiers":[{"at_percent":100,"action":"throttle","down_bps":2000000,"up_bps":1000000}],
//  "free_windows":[{"start":"01:00","end":"07:00"}],
//  "zero_rated":["198.18.0.0/24"],"always_allowed":["198.18.0.53/32"]}
// or "cycle":{"kind":"every_n_days","days":30,"time_zone":"UTC"}.
// quota_bytes null or absent: unlimited. Only "cycle" is required.

#include <nlohmann/json.hpp>

#include <string_view>

#include "core/plan.hpp"

namespace ctquota::core {

nlohmann::json plan_to_json(const Plan& plan);

// Strict: unknown keys, wrong types, negative or absurd numbers, malformed
// times, prefixes with host bits set and everything validate_plan() rejects
// throw PlanError with the dotted key ("tiers[1].down_bps"). `name` is the
// plan's name (URL or file name); a "name" member, if present, must equal it.
Plan plan_from_json(const nlohmann::json& json, std::string_view name);

}  // namespace ctquota::core
