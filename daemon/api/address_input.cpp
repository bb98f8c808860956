#include "api/address_input.hpp"

#include "api/problem.hpp"
#include "api/series.hpp"
#include "api/validation.hpp"

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

std::vector<core::Prefix> parse_address_set(const nlohmann::json& body,
                                            const std::string& path_id) {
    std::vector<FieldError> errors;
    for (const auto& [key, value] : body.items()) {
        if (key == "plan") {
            errors.push_back({key, "plans are not available yet; leave plan out"});
        } else if (key == "id" && (!value.is_string() || value.get<std::string>() != path_id)) {
            errors.push_back({key,
                              "a subscriber's id cannot change; leave id out or repeat the "
                              "one in the path"});
        } else if (key != "id" && key != "addresses") {
            errors.push_back({key, "unknown field (allowed: addresses, id)"});
        }
    }
    std::vector<core::Prefix> out;
    if (!body.contains("addresses")) {
        errors.push_back({"addresses",
                          "required: the complete list of the subscriber's addresses "
                          "([] for none)"});
    } else {
        out = parse_address_list(body["addresses"], errors);
    }
    if (!errors.empty()) {
        throw invalid_body(std::move(errors));
    }
    return out;
}

}  // namespace ctquota::api
