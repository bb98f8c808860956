#pragma once
// Problem bodies for bindings the store refused, the same for every route
// that binds (POST/PUT subscribers, POST .../addresses): 422 naming the pool
// or length limit, 409 naming the subscriber and prefix in the way.

#include <string>

#include "api/problem.hpp"
#include "store/binding_store.hpp"

namespace ctquota::api {

// 422: "errors" [{field, message}] plus "address": the refused prefix.
ApiError binding_refused(const store::BindingRefused& e, const std::string& field);
// 409: detail + `hint`; "conflict": {"address", "held_by", "held_address"}
// (held_by null: another address of the same request).
ApiError binding_conflict(const store::BindingConflict& e, const std::string& hint);

}  // namespace ctquota::api
