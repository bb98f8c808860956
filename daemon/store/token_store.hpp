#pragma once
// API bearer tokens (schema/005_api_tokens.sql). The store sees only the
// SHA-256 of a token, as 64 hex digits; making and hashing tokens is api/'s job.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "store/database.hpp"

namespace ctquota::store {

struct TokenRecord {
    std::int64_t id = 0;
    std::string name;
    std::string role;  // "admin" or "billing"
    core::TimePoint created_at{};
    std::optional<core::TimePoint> revoked_at;
};

class TokenStore {
  public:
    explicit TokenStore(Database& db) : db_(db) {}

    // Throws std::invalid_argument for a role other than admin/billing, a name
    // over 200 bytes or a hash that is not 64 hex digits.
    std::int64_t add(const std::string& name, const std::string& role,
                     const std::string& sha256_hex);
    // The token with this hash, unless revoked.
    std::optional<TokenRecord> find_active(const std::string& sha256_hex);
    std::vector<TokenRecord> list();
    // false when there is no such token or it was revoked already.
    bool revoke(std::int64_t id);

  private:
    Database& db_;
};

}  // namespace ctquota::store
