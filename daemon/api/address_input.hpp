#pragma once
// Bodies that change a subscriber's addresses: one binding for RADIUS/DHCP
// hooks, or the whole set (PUT). 422 naming every offending field. Pure.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "api/problem.hpp"
#include "core/address.hpp"
#include "core/clock.hpp"

namespace ctquota::api {

struct NewBinding {
    core::Prefix prefix;
    std::optional<core::TimePoint> valid_from;  // nullopt: now
};
// {"address": "100.64.0.9/32", "valid_from": "2024-05-01T12:00:00Z" (optional)}.
NewBinding parse_new_binding(const nlohmann::json& body);

// PUT /api/v1/subscribers/{id}: {"addresses": [...], "plan": "name" | null}
// for the subscriber `path_id`; "id" may repeat the path's id but not change
// it. At least one of addresses and plan; one left out stays as it is.
struct SubscriberUpdate {
    std::optional<std::vector<core::Prefix>> addresses;  // nullopt: unchanged
    bool plan_given = false;                             // false: plan unchanged
    std::optional<std::string> plan;                     // nullopt (given): no plan
};
SubscriberUpdate parse_subscriber_update(const nlohmann::json& body, const std::string& path_id);

// A "plan" value: a plan name ([a-z0-9][a-z0-9._-]{0,62}) or null (no plan).
// Complaints go to `errors` as "plan".
std::optional<std::string> parse_plan_field(const nlohmann::json& value,
                                            std::vector<FieldError>& errors);

}  // namespace ctquota::api
