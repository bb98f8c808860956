#pragma once
// Bodies that change a subscriber's addresses: one binding for RADIUS/DHCP
// hooks, or the whole set (PUT). 422 naming every offending field. Pure.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/address.hpp"
#include "core/clock.hpp"

namespace ctquota::api {

struct NewBinding {
    core::Prefix prefix;
    std::optional<core::TimePoint> valid_from;  // nullopt: now
};
// {"address": "100.64.0.9/32", "valid_from": "2024-05-01T12:00:00Z" (optional)}.
NewBinding parse_new_binding(const nlohmann::json& body);

// {"addresses": [...]} for the subscriber `path_id`; "id" may repeat the path's
// id but not change it. "plan" is refused until plans exist.
std::vector<core::Prefix> parse_address_set(const nlohmann::json& body, const std::string& path_id);

}  // namespace ctquota::api
