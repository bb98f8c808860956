#include "api/validation.hpp"

#include <algorithm>
#include <charconv>
#include <set>

#include "api/address_input.hpp"
#include "api/problem.hpp"
#include "core/calendar.hpp"

namespace ctquota::api {
namespace {

constexpr std::size_t kMaxId = 200;  // as the CHECK in schema/001_initial.sql
constexpr std::size_t kMaxAddresses = 1024;
constexpr int kMaxYear = 2199;  // TimePoint (int64 nanoseconds) ends in 2262

// Length of the UTF-8 sequence starting with `lead`, 0 when it cannot start one.
int sequence_length(unsigned char lead) {
    if (lead < 0x80) {
        return 1;
    }
    if (lead >= 0xc2 && lead <= 0xdf) {
        return 2;
    }
    if (lead >= 0xe0 && lead <= 0xef) {
        return 3;
    }
    return lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
}

// Second byte ranges that exclude overlongs, surrogates and code points past U+10FFFF.
bool valid_second(unsigned char lead, unsigned char b) {
    if (lead == 0xe0) {
        return b >= 0xa0 && b <= 0xbf;
    }
    if (lead == 0xed) {
        return b >= 0x80 && b <= 0x9f;
    }
    if (lead == 0xf0) {
        return b >= 0x90 && b <= 0xbf;
    }
    if (lead == 0xf4) {
        return b >= 0x80 && b <= 0x8f;
    }
    return b >= 0x80 && b <= 0xbf;
}

// "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> the tail.
std::string json_message(const nlohmann::json::exception& e) {
    std::string what = e.what();
    const auto colon = what.find(": ");
    return colon == std::string::npos ? what : what.substr(colon + 2);
}

std::string json_type(const nlohmann::json& j) {
    return j.type_name();
}

void check_fields(const nlohmann::json& body, std::vector<FieldError>& errors) {
    static const std::set<std::string> kKnown = {"id", "addresses", "plan"};
    for (const auto& [key, value] : body.items()) {
        if (!kKnown.contains(key)) {
            errors.push_back({key, "unknown field (allowed: id, addresses, plan)"});
        }
    }
}

void read_id(const nlohmann::json& body, NewSubscriber& out, std::vector<FieldError>& errors) {
    if (!body.contains("id")) {
        errors.push_back({"id", "required: the subscriber's external id (a string)"});
    } else if (!body["id"].is_string()) {
        errors.push_back({"id", "expected a string, got " + json_type(body["id"])});
    } else {
        out.id = body["id"].get<std::string>();
        if (auto why = subscriber_id_problem(out.id)) {
            errors.push_back({"id", *why});
        }
    }
}

void read_addresses(const nlohmann::json& body, NewSubscriber& out,
                    std::vector<FieldError>& errors) {
    if (body.contains("addresses")) {  // a subscriber may start without addresses
        out.addresses = parse_address_list(body["addresses"], errors);
    }
}

}  // namespace

bool is_clean_text(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto lead = static_cast<unsigned char>(s[i]);
        const int n = sequence_length(lead);
        if (n == 0 || i + static_cast<std::size_t>(n) > s.size() || lead < 0x20 || lead == 0x7f) {
            return false;
        }
        for (int k = 1; k < n; ++k) {
            const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
            if (k == 1 ? !valid_second(lead, b) : (b < 0x80 || b > 0xbf)) {
                return false;
            }
        }
        i += static_cast<std::size_t>(n);
    }
    return true;
}

nlohmann::json parse_json_object(std::string_view body) {
    if (body.empty()) {
        throw bad_request("the request needs a JSON body");
    }
    try {
        auto j = nlohmann::json::parse(body);
        if (!j.is_object()) {
            throw invalid_body({{"(body)", "expected a JSON object, got " + json_type(j)}});
        }
        return j;
    } catch (const nlohmann::json::parse_error& e) {
        throw bad_request("the body is not valid JSON (at byte " + std::to_string(e.byte) +
                          "): " + json_message(e));
    } catch (const nlohmann::json::exception& e) {
        // Valid syntax the parser still refuses, such as a number beyond double range.
        throw bad_request("the body cannot be read as JSON: " + json_message(e));
    }
}

std::optional<std::string> subscriber_id_problem(const std::string& id) {
    if (id.empty()) {
        return "must not be empty";
    }
    if (id.size() > kMaxId) {
        return "longer than " + std::to_string(kMaxId) + " bytes";
    }
    if (!is_clean_text(id)) {
        return "must be UTF-8 text without control characters";
    }
    return std::nullopt;
}

std::optional<core::Prefix> parse_cidr(const std::string& text, std::string* why) {
    const bool charset_ok =
        !text.empty() && text.size() <= 64 && std::all_of(text.begin(), text.end(), [](char c) {
            return std::isxdigit(static_cast<unsigned char>(c)) || c == '.' || c == ':' || c == '/';
        });
    const auto prefix = charset_ok ? core::Prefix::parse(text) : std::nullopt;
    if (!prefix) {
        *why = "'" + text.substr(0, 64) +
               "' is not an IPv4 or IPv6 address or prefix (like 100.64.0.42/32 or "
               "2001:db8:42::/56)";
        return std::nullopt;
    }
    const auto address = core::IpAddress::parse(text.substr(0, text.find('/')));
    if (address && *address != prefix->address) {
        *why = "'" + text + "' has bits set past the prefix length; did you mean " +
               prefix->to_string() + "?";
        return std::nullopt;
    }
    return prefix;
}

std::vector<core::Prefix> parse_address_list(const nlohmann::json& list,
                                             std::vector<FieldError>& errors) {
    std::vector<core::Prefix> out;
    if (!list.is_array()) {
        errors.push_back(
            {"addresses", "expected an array of CIDR strings, got " + json_type(list)});
        return out;
    }
    if (list.size() > kMaxAddresses) {
        errors.push_back({"addresses", "at most " + std::to_string(kMaxAddresses) + " addresses"});
        return out;
    }
    std::set<core::Prefix> seen;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string field = "addresses[" + std::to_string(i) + "]";
        if (!list[i].is_string()) {
            errors.push_back({field, "expected a CIDR string, got " + json_type(list[i])});
            continue;
        }
        std::string why;
        const auto prefix = parse_cidr(list[i].get<std::string>(), &why);
        if (!prefix) {
            errors.push_back({field, why});
        } else if (!seen.insert(*prefix).second) {
            errors.push_back({field, "duplicate of an earlier address"});
        } else {
            out.push_back(*prefix);
        }
    }
    return out;
}

NewSubscriber parse_new_subscriber(const nlohmann::json& body) {
    NewSubscriber out;
    std::vector<FieldError> errors;
    check_fields(body, errors);
    read_id(body, out, errors);
    read_addresses(body, out, errors);
    if (body.contains("plan")) {
        out.plan = parse_plan_field(body["plan"], errors);
    }
    if (!errors.empty()) {
        throw invalid_body(std::move(errors));
    }
    return out;
}

void check_query(const Query& query, std::initializer_list<std::string_view> allowed) {
    for (auto it = query.begin(); it != query.end(); ++it) {
        if (std::find(allowed.begin(), allowed.end(), it->first) == allowed.end()) {
            std::string names;
            for (const auto a : allowed) {
                names += (names.empty() ? "" : ", ") + std::string(a);
            }
            throw bad_request("unknown query parameter '" + it->first.substr(0, 64) +
                              "' (allowed: " + names + ")");
        }
        if (query.count(it->first) > 1) {
            throw bad_request("query parameter '" + it->first + "' is given more than once");
        }
        if (!is_clean_text(it->second)) {
            throw bad_request("query parameter '" + it->first +
                              "' must be UTF-8 text without control characters");
        }
    }
}

std::optional<std::string> query_value(const Query& query, const std::string& name) {
    const auto it = query.find(name);
    return it == query.end() ? std::nullopt : std::optional<std::string>(it->second);
}

std::size_t parse_limit(const Query& query, std::size_t fallback, std::size_t max) {
    const auto text = query_value(query, "limit");
    if (!text) {
        return fallback;
    }
    std::size_t n = 0;
    const auto* end = text->data() + text->size();
    const auto [ptr, ec] = std::from_chars(text->data(), end, n);
    if (text->empty() || ec != std::errc{} || ptr != end || n < 1 || n > max) {
        throw bad_request("limit must be an integer from 1 to " + std::to_string(max) + ", got '" +
                          text->substr(0, 32) + "'");
    }
    return n;
}

std::optional<core::TimePoint> parse_date(std::string_view text) {
    using namespace std::chrono;
    if (text.size() != 10 || text[4] != '-' || text[7] != '-') {
        return std::nullopt;
    }
    int parts[3] = {};
    const std::string_view fields[3] = {text.substr(0, 4), text.substr(5, 2), text.substr(8, 2)};
    for (int i = 0; i < 3; ++i) {
        const auto* end = fields[i].data() + fields[i].size();
        const auto [ptr, ec] = std::from_chars(fields[i].data(), end, parts[i]);
        if (ec != std::errc{} || ptr != end ||
            !std::isdigit(static_cast<unsigned char>(fields[i][0]))) {
            return std::nullopt;
        }
    }
    const year_month_day ymd{year{parts[0]}, month{static_cast<unsigned>(parts[1])},
                             day{static_cast<unsigned>(parts[2])}};
    if (!ymd.ok() || parts[0] < 1970 || parts[0] > kMaxYear) {
        return std::nullopt;
    }
    return core::TimePoint{sys_days{ymd}};
}

std::string format_date(core::TimePoint t) {
    using namespace std::chrono;
    const year_month_day ymd{floor<days>(t)};
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
    return buf;
}

core::TimePoint parse_cycle(const std::string& text, core::TimePoint now) {
    if (text == "current") {
        return core::month_start_utc(now);
    }
    const auto date = parse_date(text);
    if (!date) {
        throw bad_request("cycle must be 'current' or a date YYYY-MM-DD inside the cycle, got '" +
                          text.substr(0, 32) + "'");
    }
    return core::month_start_utc(*date);
}

}  // namespace ctquota::api
