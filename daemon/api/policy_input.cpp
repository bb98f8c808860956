#include "api/policy_input.hpp"

#include "api/problem.hpp"
#include "api/series.hpp"
#include "api/tokens.hpp"
#include "core/plan_json.hpp"

namespace ctquota::api {
namespace {

constexpr std::size_t kMaxKey = 255;
// TimePoint counts nanoseconds in 64 bits (ends in 2262); keep well inside.
const core::TimePoint kLatest = core::TimePoint{std::chrono::sys_days{std::chrono::year_month_day{
    std::chrono::year{2199}, std::chrono::January, std::chrono::day{1}}}};

void unknown_fields(const nlohmann::json& body, std::initializer_list<const char*> allowed,
                    std::vector<FieldError>& errors) {
    std::string names;
    for (const auto* a : allowed) {
        names += (names.empty() ? "" : ", ") + std::string(a);
    }
    for (const auto& [key, value] : body.items()) {
        bool known = false;
        for (const auto* a : allowed) {
            known = known || key == a;
        }
        if (!known) {
            errors.push_back({key, "unknown field (allowed: " + names + ")"});
        }
    }
}

// An integer in [min, kMaxQuotaBytes]; complaints name `field`.
std::optional<std::uint64_t> read_bytes(const nlohmann::json& body, const char* field,
                                        std::uint64_t min, std::vector<FieldError>& errors) {
    if (!body.contains(field)) {
        errors.push_back({field, "required: a number of bytes"});
        return std::nullopt;
    }
    const auto& v = body[field];
    const auto range = "an integer from " + std::to_string(min) + " to " +
                       std::to_string(core::kMaxQuotaBytes) + " (1 EB)";
    if (v.is_number_unsigned() && v.get<std::uint64_t>() >= min &&
        v.get<std::uint64_t>() <= core::kMaxQuotaBytes) {
        return v.get<std::uint64_t>();
    }
    if (v.is_number_integer() && v.get<std::int64_t>() < 0) {
        errors.push_back({field, "must not be negative: expected " + range});
    } else if (v.is_number()) {
        errors.push_back({field, "expected " + range + ", got " + v.dump()});
    } else {
        errors.push_back({field, "expected " + range + ", got " + std::string(v.type_name())});
    }
    return std::nullopt;
}

}  // namespace

std::uint64_t parse_quota_body(const nlohmann::json& body) {
    std::vector<FieldError> errors;
    unknown_fields(body, {"quota_bytes"}, errors);
    const auto bytes = read_bytes(body, "quota_bytes", 0, errors);
    if (!errors.empty()) {
        throw invalid_body(std::move(errors));
    }
    return *bytes;
}

TopUpInput parse_topup_body(const nlohmann::json& body, core::TimePoint now) {
    std::vector<FieldError> errors;
    unknown_fields(body, {"bytes", "expires_at"}, errors);
    TopUpInput out;
    const auto bytes = read_bytes(body, "bytes", 1, errors);
    if (body.contains("expires_at") && !body["expires_at"].is_null()) {
        const auto& v = body["expires_at"];
        const auto text = v.is_string() ? v.get<std::string>() : std::string();
        const auto t = text.find('T') != std::string::npos ? parse_timestamp(text) : std::nullopt;
        if (!t) {
            errors.push_back(
                {"expires_at", "expected an RFC 3339 time with a zone, like 2024-06-01T00:00:00Z"});
        } else if (*t <= now) {
            errors.push_back({"expires_at", "must be in the future"});
        } else if (*t >= kLatest) {
            errors.push_back({"expires_at", "must be before 2199-01-01"});
        } else {
            out.expires_at = t;
        }
    }
    if (!errors.empty()) {
        throw invalid_body(std::move(errors));
    }
    out.bytes = *bytes;
    // nlohmann::json keeps keys sorted: equal bodies hash equally whatever
    // their spacing or key order.
    out.request_sha256_hex = sha256_hex(body.dump());
    return out;
}

std::optional<std::string> idempotency_key(const std::string& header) {
    if (header.empty()) {
        return std::nullopt;
    }
    const bool printable = std::all_of(header.begin(), header.end(), [](char c) {
        return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
    });
    if (header.size() > kMaxKey || !printable) {
        throw bad_request(
            "the Idempotency-Key header must be 1 to 255 printable ASCII characters (a UUID is "
            "a good choice)");
    }
    return header;
}

core::Plan parse_plan_body(nlohmann::json body, const std::string& path_name) {
    if (!core::valid_plan_name(path_name)) {
        throw invalid_body({{"name", "'" + path_name.substr(0, 64) +
                                         "' is not a plan name: [a-z0-9][a-z0-9._-]{0,62}"}});
    }
    if (body.contains("name") && (!body["name"].is_string() || body["name"] != path_name)) {
        throw invalid_body(
            {{"name", "must be the plan's name in the path ('" + path_name + "') or left out"}});
    }
    for (const auto* read_only : {"source", "source_file", "updated_at"}) {
        body.erase(read_only);
    }
    body["name"] = path_name;
    try {
        return core::plan_from_json(body, path_name);
    } catch (const core::PlanError& e) {
        throw invalid_body({{e.key.empty() ? "(body)" : e.key, e.message}});
    }
}

}  // namespace ctquota::api
