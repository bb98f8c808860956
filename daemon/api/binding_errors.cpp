#include "api/binding_errors.hpp"

namespace ctquota::api {

ApiError binding_refused(const store::BindingRefused& e, const std::string& field) {
    Problem p = invalid_body({{field, e.what()}}).problem();
    p.extensions["address"] = e.prefix();
    return ApiError(std::move(p));
}

ApiError binding_conflict(const store::BindingConflict& e, const std::string& hint) {
    Problem p = conflict(std::string(e.what()) + "; " + hint).problem();
    p.extensions["conflict"] = {
        {"address", e.prefix()},
        {"held_by",
         e.holder().empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.holder())},
        {"held_address", e.held_prefix()}};
    return ApiError(std::move(p));
}

}  // namespace ctquota::api
