#pragma once
// Validation of everything a client sends: JSON bodies, query parameters,
// path ids. Malformed syntax is a 400 (bad JSON, a limit that is no number, a
// broken cursor); a well-formed body with bad content is a 422 naming every
// offending field. Pure.

#include <cstddef>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/problem.hpp"
#include "core/address.hpp"
#include "core/clock.hpp"

namespace ctquota::api {

using Query = std::multimap<std::string, std::string>;

// Valid UTF-8 without control characters (C0 and DEL) or NUL.
bool is_clean_text(std::string_view s);

// The body as a JSON object; 400 when empty or not JSON, 422 when not an object.
nlohmann::json parse_json_object(std::string_view body);

struct NewSubscriber {
    std::string id;
    std::vector<core::Prefix> addresses;
    std::optional<std::string> plan;  // checked for syntax only; the route checks it exists
};
// {"id": "...", "addresses": ["cidr", ...], "plan": "name" (optional)}; 422
// listing every problem.
NewSubscriber parse_new_subscriber(const nlohmann::json& body);
// ["cidr", ...]: at most 1024, no duplicates; complaints go to `errors` as
// "addresses" or "addresses[i]".
std::vector<core::Prefix> parse_address_list(const nlohmann::json& list,
                                             std::vector<FieldError>& errors);
// A subscriber id as the store accepts it: 1..200 bytes of clean text.
std::optional<std::string> subscriber_id_problem(const std::string& id);
// A CIDR as a client may write it: "100.64.0.42", "100.64.0.0/10", "2001:db8::/56";
// nullopt with *why set when it is not one (host bits set, bad length, ...).
std::optional<core::Prefix> parse_cidr(const std::string& text, std::string* why);

// 400 for parameters not in `allowed`, repeated ones and unclean text.
void check_query(const Query& query, std::initializer_list<std::string_view> allowed);
std::optional<std::string> query_value(const Query& query, const std::string& name);
// "limit": an integer in 1..max, `fallback` when absent; 400 otherwise.
std::size_t parse_limit(const Query& query, std::size_t fallback, std::size_t max);

// "YYYY-MM-DD" as a valid calendar date, years 1970..2199 (a TimePoint counts
// nanoseconds in 64 bits, which ends in 2262).
std::optional<core::TimePoint> parse_date(std::string_view text);
std::string format_date(core::TimePoint t);
// The billing cycle (calendar month, UTC) named by "current" or any date in it.
// 400 when malformed.
core::TimePoint parse_cycle(const std::string& text, core::TimePoint now);

}  // namespace ctquota::api
