#pragma once
// Bodies and parameters of the policy routes: quota overrides, top-ups and
// their Idempotency-Key, and plan bodies. Malformed syntax is a 400, bad
// content a 422 naming every field. Pure.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "api/validation.hpp"
#include "core/clock.hpp"
#include "core/plan.hpp"

namespace ctquota::api {

// {"quota_bytes": 0..kMaxQuotaBytes}.
std::uint64_t parse_quota_body(const nlohmann::json& body);

struct TopUpInput {
    std::uint64_t bytes = 0;
    std::optional<core::TimePoint> expires_at;  // nullopt: end of the current cycle
    std::string request_sha256_hex;             // of the body's canonical JSON
};
// {"bytes": 1..kMaxQuotaBytes, "expires_at": "RFC 3339 time after now" (optional)}.
TopUpInput parse_topup_body(const nlohmann::json& body, core::TimePoint now);

// The Idempotency-Key header: nullopt when absent; 400 unless 1..255 printable
// ASCII characters.
std::optional<std::string> idempotency_key(const std::string& header);

// PUT /api/v1/plans/{name}: the plan JSON (H1's plan_from_json) for the plan
// `path_name`. "name" may repeat the path's name; the read-only fields GET
// adds (source, source_file, updated_at) are ignored, so a GET body can be
// PUT back. 422 naming the offending key.
core::Plan parse_plan_body(nlohmann::json body, const std::string& path_name);

}  // namespace ctquota::api
