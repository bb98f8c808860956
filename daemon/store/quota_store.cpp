#include "store/quota_store.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <pqxx/pqxx>
#include <stdexcept>

#include "core/plan.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

constexpr std::size_t kMaxKey = 255;  // as the CHECK in schema/006_policies.sql

std::int64_t as_bigint(std::uint64_t v, const char* what) {
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw std::invalid_argument(std::string(what) + " is larger than 9223372036854775807");
    }
    return static_cast<std::int64_t>(v);
}

void validate(const NewTopUp& t) {
    if (t.bytes == 0) {
        throw std::invalid_argument("a top-up adds at least 1 byte");
    }
    as_bigint(t.bytes, "a top-up's bytes");
    if (t.expires_at <= t.created_at) {
        throw std::invalid_argument("a top-up must expire after it is made");
    }
    if (t.idempotency_key && (t.idempotency_key->empty() || t.idempotency_key->size() > kMaxKey)) {
        throw std::invalid_argument("an idempotency key is 1 to 255 bytes");
    }
    const auto& h = t.request_sha256_hex;
    const bool hash_ok =
        h.empty() || (h.size() == 64 && std::all_of(h.begin(), h.end(), [](char c) {
                          return std::isxdigit(static_cast<unsigned char>(c)) != 0;
                      }));
    if (!hash_ok || (t.idempotency_key && h.empty())) {
        throw std::invalid_argument("a request hash is 64 hex digits (required with a key)");
    }
}

std::string topup_columns() {
    return "id, bytes, " + micros_of("created_at") + ", " + micros_of("expires_at") +
           ", idempotency_key";
}

TopUpRecord topup_of(const pqxx::row& r) {
    TopUpRecord t{r[0].as<std::int64_t>(), r[1].as<std::uint64_t>(),
                  from_micros(r[2].as<std::int64_t>()), from_micros(r[3].as<std::int64_t>()),
                  std::nullopt};
    if (!r[4].is_null()) {
        t.idempotency_key = r[4].as<std::string>();
    }
    return t;
}

// The top-up stored under t's key, if any; IdempotencyKeyReused when it was
// made by another request.
std::optional<TopUpRecord> held_topup(pqxx::work& txn, core::SubscriberId id, const NewTopUp& t) {
    const auto held = txn.exec_params("SELECT " + topup_columns() +
                                          ", encode(request_sha256, 'hex') FROM topups "
                                          "WHERE subscriber_id = $1 AND idempotency_key = $2",
                                      id, t.idempotency_key);
    if (held.empty()) {
        return std::nullopt;
    }
    std::string stored = held[0][5].is_null() ? "" : held[0][5].as<std::string>();
    std::string given = t.request_sha256_hex;
    for (auto* s : {&stored, &given}) {
        std::transform(s->begin(), s->end(), s->begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    }
    if (stored != given) {
        throw IdempotencyKeyReused("the Idempotency-Key '" + *t.idempotency_key +
                                   "' was used before with another request (top-up " +
                                   held[0][0].as<std::string>() +
                                   "); use a new key for a new top-up");
    }
    return topup_of(held[0]);
}

// Top-ups still active when t starts, plus t, stay within kMaxQuotaBytes.
void check_allowance_room(pqxx::work& txn, core::SubscriberId id, const NewTopUp& t) {
    const auto limit = static_cast<std::int64_t>(core::kMaxQuotaBytes);
    const auto row = txn.exec_params1(
        "SELECT s::text, s > $4 FROM (SELECT COALESCE(sum(bytes), 0)::numeric + $2 AS s "
        "FROM topups WHERE subscriber_id = $1 AND expires_at > " +
            ts(3) + ") t",
        id, as_bigint(t.bytes, "bytes"), to_micros(t.created_at), limit);
    const auto total = row[0].as<std::string>();
    const bool over = row[1].as<bool>();
    if (over) {
        throw AllowanceLimitExceeded("this top-up would bring the subscriber's active top-ups to " +
                                     total + " bytes, more than the limit of " +
                                     std::to_string(limit) + " bytes (1 EB)");
    }
}

}  // namespace

bool QuotaStore::set_override(core::SubscriberId id, core::TimePoint cycle_start,
                              std::uint64_t quota_bytes) {
    const auto bytes = as_bigint(quota_bytes, "quota_bytes");
    return in_transaction(db_, "setting a quota override", [&](pqxx::work& txn) {
        const auto rows = txn.exec_params(
            "INSERT INTO quota_overrides (subscriber_id, cycle_start, quota_bytes) VALUES ($1, " +
                ts(2) +
                ", $3) ON CONFLICT (subscriber_id, cycle_start) DO UPDATE SET quota_bytes = "
                "EXCLUDED.quota_bytes, created_at = now() RETURNING (xmax = 0)",
            id, to_micros(cycle_start), bytes);
        return rows[0][0].as<bool>();
    });
}

bool QuotaStore::delete_override(core::SubscriberId id, core::TimePoint cycle_start) {
    return in_transaction(db_, "removing a quota override", [&](pqxx::work& txn) {
        return !txn.exec_params(
                       "DELETE FROM quota_overrides WHERE subscriber_id = $1 AND "
                       "cycle_start = " +
                           ts(2) + " RETURNING 1",
                       id, to_micros(cycle_start))
                    .empty();
    });
}

std::optional<QuotaOverride> QuotaStore::find_override(core::SubscriberId id,
                                                       core::TimePoint cycle_start) {
    using Result = std::optional<QuotaOverride>;
    return in_transaction(db_, "reading a quota override", [&](pqxx::work& txn) -> Result {
        const auto rows = txn.exec_params(
            "SELECT quota_bytes, " + micros_of("created_at") +
                " FROM quota_overrides WHERE subscriber_id = $1 AND cycle_start = " + ts(2),
            id, to_micros(cycle_start));
        if (rows.empty()) {
            return std::nullopt;
        }
        return QuotaOverride{cycle_start, rows[0][0].as<std::uint64_t>(),
                             from_micros(rows[0][1].as<std::int64_t>())};
    });
}

TopUpResult QuotaStore::add_topup(core::SubscriberId id, const NewTopUp& t) {
    validate(t);
    const auto hash = t.request_sha256_hex.empty() ? std::optional<std::string>()
                                                   : std::optional(t.request_sha256_hex);
    return in_transaction(db_, "adding a top-up", [&](pqxx::work& txn) {
        // The row lock serialises this subscriber's top-ups: the sum below
        // cannot be raced past the limit, and a concurrent retry of the same
        // key waits here and then finds the winner's row.
        txn.exec_params("SELECT 1 FROM subscribers WHERE id = $1 FOR NO KEY UPDATE", id);
        if (t.idempotency_key) {
            if (auto held = held_topup(txn, id, t)) {
                return TopUpResult{*held, true};
            }
        }
        check_allowance_room(txn, id, t);
        const auto inserted = txn.exec_params(
            "INSERT INTO topups (subscriber_id, bytes, created_at, expires_at, idempotency_key, "
            "request_sha256) VALUES ($1, $2, " +
                ts(3) + ", " + ts(4) + ", $5, decode($6, 'hex')) " +
                "ON CONFLICT (subscriber_id, idempotency_key) DO NOTHING RETURNING " +
                topup_columns(),
            id, as_bigint(t.bytes, "bytes"), to_micros(t.created_at), to_micros(t.expires_at),
            t.idempotency_key, hash);
        if (!inserted.empty()) {
            return TopUpResult{topup_of(inserted[0]), false};
        }
        if (auto held = held_topup(txn, id, t)) {  // raced by an insert without the lock
            return TopUpResult{*held, true};
        }
        throw DatabaseError("a top-up's idempotency key conflicted but its row is gone");
    });
}

std::vector<TopUpRecord> QuotaStore::active_topups(core::SubscriberId id, core::TimePoint now) {
    return in_transaction(db_, "reading top-ups", [&](pqxx::work& txn) {
        std::vector<TopUpRecord> out;
        for (const auto& r :
             txn.exec_params("SELECT " + topup_columns() +
                                 " FROM topups WHERE subscriber_id = $1 AND "
                                 "created_at <= " +
                                 ts(2) + " AND expires_at > " + ts(2) + " ORDER BY expires_at, id",
                             id, to_micros(now))) {
            out.push_back(topup_of(r));
        }
        return out;
    });
}

std::vector<TopUpRecord> QuotaStore::topups(core::SubscriberId id, std::int64_t before_id,
                                            std::size_t limit) {
    return in_transaction(db_, "listing top-ups", [&](pqxx::work& txn) {
        std::vector<TopUpRecord> out;
        for (const auto& r : txn.exec_params("SELECT " + topup_columns() +
                                                 " FROM topups WHERE subscriber_id = $1 AND "
                                                 "($2::bigint = 0 OR id < $2::bigint) "
                                                 "ORDER BY id DESC LIMIT $3",
                                             id, before_id, static_cast<std::int64_t>(limit))) {
            out.push_back(topup_of(r));
        }
        return out;
    });
}

}  // namespace ctquota::store
