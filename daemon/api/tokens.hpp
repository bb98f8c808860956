#pragma once
// API tokens: "ctq_" + 32 random bytes in base64url. Only their SHA-256 is
// stored; SHA-256 comes from OpenSSL's libcrypto, which the HTTPS server
// links anyway, rather than a hand-written digest.

#include <optional>
#include <string>
#include <string_view>

#include "api/request.hpp"

namespace ctquota::api {

// A new token from the kernel's random source (getrandom); throws on failure.
std::string generate_token();
// True for "ctq_" followed by 43 base64url characters (32 bytes).
bool is_token_syntax(std::string_view token);
// Lower-case hex SHA-256 of `text`.
std::string sha256_hex(std::string_view text);
// The token of an "Authorization: Bearer <token>" value (scheme case-insensitive);
// nullopt when the header is empty or of another scheme.
std::optional<std::string> bearer_token(std::string_view authorization);

std::optional<Role> parse_role(std::string_view text);
const char* role_name(Role role);

}  // namespace ctquota::api
