#include "api/address_input.hpp"

#include "api/problem.hpp"
#include "api/series.hpp"
#include "api/validation.hpp"
#include "core/plan.hpp"

namespace ctquota::api {
namespace {

void read_address(const nlohmann::json& body, NewBinding& out, std::vector<FieldError>& errors) {
    if (!body.contains("address")) {
        errors.push_back({"address", "required: the address or prefix to bind, as CIDR text"});
        return;
    }
    const auto& value = body["address"];
    if (!value.is_string()) {
        errors.push_back(
            {"address", std::string("expected a CIDR string, got ") + value.type_name()});
        return;
    }
    std::string why;
    if (const auto prefix = parse_cidr(value.get<std::string>(), &why)) {
        out.prefix = *prefix;
    } else {
        errors.push_back({"address", why});
    }
}

void read_valid_from(const nlohmann::json& body, NewBinding& out, std::vector<FieldError>& errors) {
    if (!body.contains("valid_from") || body["valid_from"].is_null()) {
        return;
    }
    const auto& value = body["valid_from"];
    const auto t = value.is_string() ? parse_timestamp(value.get<std::string>()) : std::nullopt;
    if (!t) {
        errors.push_back(
            {"valid_from", "expected an ISO-8601 time with a zone, like 2024-05-01T12:00:00Z"});
        return;
    }
    out.valid_from = t;
}

}  // namespace

NewBinding parse_new_binding(const nlohmann::json& body) {
    NewBinding out;
    std::vector<FieldError> errors;
    for (const auto& [key, value] : body.items()) {
        if (key != "address" && key != "valid_from") {
            errors.push_back({key, "unknown field (allowed: address, valid_from)"});
        }
    }
    read_address(body, out, errors);
    read_valid_from(body, out, errors);
    if (!errors.empty()) {
        throw invalid_body(std::move(errors));
    }
    return out;
}

std::optional<std::string> parse_plan_field(const nlohmann::json& value,
                                            std::vector<FieldError>& errors) {
    if (value.is_null()) {
        return std::nullopt;
    }
    if (!value.is_string()) {
        errors.push_back(
            {"plan", std::string("expected a plan name or null, got ") + value.type_name()});
        return std::nullopt;
    }
    const auto name = value.get<std::string>();
    if (!core::valid_plan_name(name)) {
        errors.push_back({"plan", "'" + name.substr(0, 64) +
                                      "' is not a plan name ([a-z0-9][a-z0-9._-]{0,62}); "
                                      "GET /api/v1/plans lists the plans"});
        return std::nullopt;
    }
    return name;
}

SubscriberUpdate parse_subscriber_update(const nlohmann::json& body, const std::string& path_id) {
    std::vector<FieldError> errors;
    SubscriberUpdate out;
    for (const auto& [key, value] : body.items()) {
        if (key == "plan") {
            out.plan_given = true;
            out.plan = parse_plan_field(value, errors);
        } else if (key == "id" && (!value.is_string() || value.get<std::string>() != path_id)) {
            errors.push_back({key,
                              "a subscriber's id cannot change; leave id out or repeat the "
                              "one in the path"});
        } else if (key == "addresses") {
            out.addresses = parse_address_list(value, errors);
        } else if (key != "id") {
            errors.push_back({key, "unknown field (allowed: addresses, id, plan)"});
        }
    }
    if (!body.contains("addresses") && !body.contains("plan")) {
        errors.push_back({"addresses",
                          "required unless plan is given: the complete list of the subscriber's "
                          "addresses ([] for none)"});
    }
    if (!errors.empty()) {
        throw invalid_body(std::move(errors));
    }
    return out;
}

}  // namespace ctquota::api
