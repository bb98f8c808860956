#pragma once
// base64url (RFC 4648 section 5) without padding, for tokens and cursors. Pure.

#include <optional>
#include <string>
#include <string_view>

namespace ctquota::api {

std::string base64url_encode(std::string_view bytes);
// Strict: no padding, no whitespace, no characters outside the alphabet, and
// unused trailing bits must be zero (each byte string has one spelling).
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace ctquota::api
