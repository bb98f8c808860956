#include "store/token_store.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

constexpr std::size_t kMaxName = 200;  // as the CHECK in schema/005_api_tokens.sql

void validate_hash(const std::string& hex) {
    const bool ok = hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
                        return std::isxdigit(static_cast<unsigned char>(c)) != 0;
                    });
    if (!ok) {
        throw std::invalid_argument("a token hash is 64 hex digits");
    }
}

TokenRecord record_of(const pqxx::row& r) {
    TokenRecord t{r[0].as<std::int64_t>(), r[1].as<std::string>(), r[2].as<std::string>(),
                  from_micros(r[3].as<std::int64_t>()), std::nullopt};
    if (!r[4].is_null()) {
        t.revoked_at = from_micros(r[4].as<std::int64_t>());
    }
    return t;
}

std::string columns() {
    return "id, name, role, " + micros_of("created_at") + ", " + micros_of("revoked_at");
}

}  // namespace

std::int64_t TokenStore::add(const std::string& name, const std::string& role,
                             const std::string& sha256_hex) {
    if (role != "admin" && role != "billing") {
        throw std::invalid_argument("role must be admin or billing, not '" + role + "'");
    }
    if (name.size() > kMaxName) {
        throw std::invalid_argument("token name is longer than 200 bytes");
    }
    validate_hash(sha256_hex);
    return in_transaction(db_, "adding an API token", [&](pqxx::work& txn) {
        return txn
            .exec_params(
                "INSERT INTO api_tokens (name, role, token_sha256) VALUES ($1, $2, "
                "decode($3, 'hex')) RETURNING id",
                name, role, sha256_hex)[0][0]
            .as<std::int64_t>();
    });
}

std::optional<TokenRecord> TokenStore::find_active(const std::string& sha256_hex) {
    validate_hash(sha256_hex);
    return in_transaction(
        db_, "looking up an API token", [&](pqxx::work& txn) -> std::optional<TokenRecord> {
            const auto rows =
                txn.exec_params("SELECT " + columns() +
                                    " FROM api_tokens WHERE token_sha256 = decode($1, 'hex') "
                                    "AND revoked_at IS NULL",
                                sha256_hex);
            if (rows.empty()) {
                return std::nullopt;
            }
            return record_of(rows[0]);
        });
}

std::vector<TokenRecord> TokenStore::list() {
    return in_transaction(db_, "listing API tokens", [&](pqxx::work& txn) {
        std::vector<TokenRecord> out;
        for (const auto& r : txn.exec("SELECT " + columns() + " FROM api_tokens ORDER BY id")) {
            out.push_back(record_of(r));
        }
        return out;
    });
}

bool TokenStore::revoke(std::int64_t id) {
    return in_transaction(db_, "revoking an API token", [&](pqxx::work& txn) {
        return !txn.exec_params(
                       "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS "
                       "NULL RETURNING id",
                       id)
                    .empty();
    });
}

}  // namespace ctquota::store
