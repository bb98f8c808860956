#include "api/auth.hpp"

#include "api/problem.hpp"
#include "api/tokens.hpp"

namespace ctquota::api {
namespace {

constexpr std::size_t kMaxCached = 4096;

}  // namespace

Authenticator::Authenticator(TokenLookup lookup, const core::Clock& clock,
                             std::chrono::nanoseconds ttl)
    : lookup_(std::move(lookup)), clock_(clock), ttl_(ttl) {}

std::optional<Principal> Authenticator::cached(const std::string& hash) {
    std::lock_guard lock(mu_);
    const auto it = cache_.find(hash);
    if (it == cache_.end()) {
        return std::nullopt;
    }
    if (it->second.expires <= clock_.now()) {
        cache_.erase(it);
        return std::nullopt;
    }
    return it->second.principal;
}

Principal Authenticator::authenticate(std::string_view authorization, Access access) {
    if (authorization.empty()) {
        throw unauthorized(
            "this route needs 'Authorization: Bearer <token>'; an administrator makes tokens with "
            "'ctquotad token create --role admin|billing'");
    }
    const auto token = bearer_token(authorization);
    if (!token) {
        throw unauthorized("the Authorization header must use the Bearer scheme: 'Bearer <token>'");
    }
    if (!is_token_syntax(*token)) {
        throw unauthorized("the bearer token is malformed: ctquota tokens start with 'ctq_'");
    }
    const auto hash = sha256_hex(*token);
    auto principal = cached(hash);
    if (!principal) {
        principal = lookup_(hash);
        if (!principal) {
            throw unauthorized("the bearer token is unknown or revoked");
        }
        std::lock_guard lock(mu_);
        if (cache_.size() >= kMaxCached) {
            cache_.clear();
        }
        cache_[hash] = Entry{*principal, clock_.now() + ttl_};
    }
    if (access == Access::Write && principal->role != Role::Admin) {
        throw forbidden("token '" + principal->name + "' has role " + role_name(principal->role) +
                        ", which may only read; this route needs an admin token");
    }
    return *principal;
}

}  // namespace ctquota::api
