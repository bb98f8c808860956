#include "store/binding_store.hpp"

#include <algorithm>
#include <pqxx/pqxx>

#include "store/binding_claims.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

constexpr const char* kExclusionViolation = "23P01";

// The active subscriber's id, its row locked so that changes to one
// subscriber's bindings (and its removal) happen one after another.
std::optional<std::int64_t> lock_subscriber(pqxx::work& txn, const std::string& external_id) {
    const auto rows = txn.exec_params(
        "SELECT id FROM subscribers WHERE external_id = $1 AND removed_at IS NULL FOR UPDATE",
        external_id);
    if (rows.empty()) {
        return std::nullopt;
    }
    return rows[0][0].as<std::int64_t>();
}

// The prefixes of `prefixes` that `id` does not hold at `at` or later: the
// ones a change would bind anew.
std::vector<core::Prefix> not_held(pqxx::work& txn, std::int64_t id,
                                   const std::vector<core::Prefix>& prefixes, core::TimePoint at) {
    const auto rows = txn.exec_params(
        "SELECT prefix::text FROM subscriber_bindings WHERE subscriber_id = $1 "
        "AND prefix = ANY($2::cidr[]) AND (valid_until IS NULL OR valid_until > " +
            ts(3) + ")",
        id, prefix_array(prefixes), to_micros(at));
    std::vector<core::Prefix> held;
    for (const auto& r : rows) {
        if (const auto p = core::Prefix::parse(r[0].as<std::string>())) {
            held.push_back(*p);
        }
    }
    std::vector<core::Prefix> fresh;
    for (const auto& p : prefixes) {
        if (std::find(held.begin(), held.end(), p) == held.end() &&
            std::find(fresh.begin(), fresh.end(), p) == fresh.end()) {
            fresh.push_back(p);
        }
    }
    return fresh;
}

// Inserts, turning a lost race with a writer that bypassed lock_bindings
// (the exclusion constraint of schema/003 still holds) into a ConflictError.
void insert_missing(pqxx::work& txn, std::int64_t id, const std::string& cidrs,
                    core::TimePoint at) {
    try {
        txn.exec_params(
            "INSERT INTO subscriber_bindings (subscriber_id, prefix, valid_from) "
            "SELECT $1, p, " +
                ts(3) +
                " FROM unnest($2::cidr[]) AS p WHERE NOT EXISTS (SELECT 1 FROM "
                "subscriber_bindings b WHERE b.subscriber_id = $1 AND b.prefix = p "
                "AND (b.valid_until IS NULL OR b.valid_until > " +
                ts(3) + "))",
            id, cidrs, to_micros(at));
    } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() == kExclusionViolation) {
            throw ConflictError("an address is bound to another subscriber at that time");
        }
        throw;
    }
}

// Bindings of `id` matching `which` (a fixed condition on parameter $2): ended
// at `at`, or deleted when they had not started by then. Returns how many changed.
std::size_t end_bindings(pqxx::work& txn, std::int64_t id, const char* which,
                         const std::string& cidrs, core::TimePoint at) {
    const std::string match = std::string(" WHERE subscriber_id = $1 AND ") + which;
    const auto deleted =
        txn.exec_params("DELETE FROM subscriber_bindings" + match + " AND valid_from >= " + ts(3),
                        id, cidrs, to_micros(at));
    const auto ended = txn.exec_params(
        "UPDATE subscriber_bindings SET valid_until = " + ts(3) + match + " AND valid_from < " +
            ts(3) + " AND (valid_until IS NULL OR valid_until > " + ts(3) + ")",
        id, cidrs, to_micros(at));
    return static_cast<std::size_t>(deleted.affected_rows() + ended.affected_rows());
}

constexpr const char* kThisPrefix = "prefix = $2::cidr";
constexpr const char* kNotInSet = "NOT (prefix = ANY($2::cidr[]))";

BindingView own_binding(pqxx::work& txn, std::int64_t id, const std::string& cidr,
                        core::TimePoint at) {
    const auto rows = txn.exec_params(
        "SELECT prefix::text, " + micros_of("valid_from") + ", " + micros_of("valid_until") +
            " FROM subscriber_bindings WHERE subscriber_id = $1 AND prefix = $2::cidr "
            "AND (valid_until IS NULL OR valid_until > " +
            ts(3) + ") ORDER BY valid_from LIMIT 1",
        id, cidr, to_micros(at));
    if (rows.empty()) {
        throw DatabaseError("binding of " + cidr + " vanished inside its transaction");
    }
    BindingView view{rows[0][0].as<std::string>(), from_micros(rows[0][1].as<std::int64_t>()),
                     std::nullopt};
    if (!rows[0][2].is_null()) {
        view.valid_until = from_micros(rows[0][2].as<std::int64_t>());
    }
    return view;
}

std::string conflict_message(const core::Prefix& prefix, const std::string& holder,
                             const core::Prefix& held) {
    const auto text = prefix.to_string();
    if (holder.empty()) {
        return text + " overlaps " + held.to_string() + " of the same request";
    }
    const auto by = ", bound to subscriber '" + holder + "' at that time";
    if (prefix == held) {
        return "address " + text + " is bound to subscriber '" + holder + "' at that time";
    }
    return text + (prefix.length > held.length ? " lies inside " : " contains ") +
           held.to_string() + by;
}

}  // namespace

BindingConflict::BindingConflict(const core::Prefix& prefix, std::string holder,
                                 const core::Prefix& held)
    : ConflictError(conflict_message(prefix, holder, held)),
      prefix_(prefix.to_string()),
      holder_(std::move(holder)),
      held_prefix_(held.to_string()) {}

std::optional<BindResult> BindingStore::bind(const std::string& external_id,
                                             const core::Prefix& prefix,
                                             core::TimePoint valid_from) {
    const auto cidr = prefix.to_string();
    return in_transaction(
        db_, "binding an address", [&](pqxx::work& txn) -> std::optional<BindResult> {
            lock_bindings(txn);
            const auto id = lock_subscriber(txn, external_id);
            if (!id) {
                return std::nullopt;
            }
            const auto fresh = not_held(txn, *id, {prefix}, valid_from);
            if (!fresh.empty()) {
                check_new_bindings(txn, fresh, valid_from, rules_);
                insert_missing(txn, *id, prefix_array(fresh), valid_from);
            }
            return BindResult{!fresh.empty(), own_binding(txn, *id, cidr, valid_from)};
        });
}

UnbindResult BindingStore::unbind(const std::string& external_id, const core::Prefix& prefix,
                                  core::TimePoint at) {
    return in_transaction(db_, "unbinding an address", [&](pqxx::work& txn) {
        const auto id = lock_subscriber(txn, external_id);
        if (!id) {
            return UnbindResult::UnknownSubscriber;
        }
        const auto changed = end_bindings(txn, *id, kThisPrefix, prefix.to_string(), at);
        return changed == 0 ? UnbindResult::NotBound : UnbindResult::Ended;
    });
}

bool BindingStore::replace(const std::string& external_id,
                           const std::vector<core::Prefix>& prefixes, core::TimePoint at) {
    const auto cidrs = prefix_array(prefixes);
    return in_transaction(db_, "replacing addresses", [&](pqxx::work& txn) {
        lock_bindings(txn);
        const auto id = lock_subscriber(txn, external_id);
        if (!id) {
            return false;
        }
        // Ended first, so that a prefix may be replaced by one nested in it.
        end_bindings(txn, *id, kNotInSet, cidrs, at);
        const auto fresh = not_held(txn, *id, prefixes, at);
        check_new_bindings(txn, fresh, at, rules_);
        insert_missing(txn, *id, cidrs, at);
        return true;
    });
}

}  // namespace ctquota::store
