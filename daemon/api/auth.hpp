#pragma once
// Bearer-token authentication and the role check. Tokens are looked up by
// their SHA-256 through an injected function (the store in the daemon, a map
// in tests); answers are cached for `ttl`, so a revoked token stops working
// within that time. Unknown tokens are not cached: the cache cannot be filled
// by guessing.

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "api/request.hpp"
#include "api/router.hpp"
#include "core/clock.hpp"

namespace ctquota::api {

using TokenLookup = std::function<std::optional<Principal>(const std::string& sha256_hex)>;

class Authenticator {
  public:
    Authenticator(TokenLookup lookup, const core::Clock& clock, std::chrono::nanoseconds ttl);

    // The caller behind an Authorization header value, allowed `access`.
    // Throws ApiError 401 (no, malformed, unknown or revoked token) or 403
    // (a billing token on a write route); lookup failures pass through.
    Principal authenticate(std::string_view authorization, Access access);

  private:
    std::optional<Principal> cached(const std::string& hash);

    struct Entry {
        Principal principal;
        core::TimePoint expires;
    };
    TokenLookup lookup_;
    const core::Clock& clock_;
    std::chrono::nanoseconds ttl_;
    std::mutex mu_;
    std::unordered_map<std::string, Entry> cache_;
};

}  // namespace ctquota::api
