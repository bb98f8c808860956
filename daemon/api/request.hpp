#pragma once
// The API's own request and reply values: handlers see these, never the HTTP
// library's types, so they can be called from tests directly.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ctquota::api {

enum class Role : std::uint8_t { Billing, Admin };

// Who made the request (after authentication); empty for public routes.
struct Principal {
    std::int64_t token_id = 0;
    std::string name;
    Role role = Role::Billing;
};

struct Request {
    std::string method;
    std::string path;                                // percent-encoded, as sent
    std::map<std::string, std::string> path_params;  // decoded
    std::multimap<std::string, std::string> query;   // decoded
    std::map<std::string, std::string> headers;      // names in lower case
    std::string body;
    std::optional<Principal> principal;
    std::string client_address;  // the peer's IP address, for log lines

    [[nodiscard]] std::string header(const std::string& lower_name) const {
        const auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
    [[nodiscard]] const std::string& param(const std::string& name) const {
        return path_params.at(name);
    }
};

struct Reply {
    int status = 200;
    std::string content_type;
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};

// Serialises without throwing: text that is not UTF-8 (ids from the database,
// echoed input) is replaced by U+FFFD rather than failing the response.
std::string to_body(const nlohmann::ordered_json& j);
Reply json_reply(int status, const nlohmann::ordered_json& body);
Reply no_content();

}  // namespace ctquota::api
