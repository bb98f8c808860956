#include "store/binding_claims.hpp"

#include "store/binding_store.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

constexpr long long kBindingsLock = 0x6374716269;  // "ctqbi"; migrations use "ctqua"

}  // namespace

void lock_bindings(pqxx::work& txn) {
    txn.exec_params("SELECT pg_advisory_xact_lock($1)", kBindingsLock);
}

void check_new_bindings(pqxx::work& txn, const std::vector<core::Prefix>& fresh,
                        core::TimePoint from, const core::BindingRules& rules) {
    if (fresh.empty()) {
        return;  // a change that only keeps or ends bindings
    }
    for (const auto& p : fresh) {
        if (auto why = rules.refusal(p)) {
            throw BindingRefused(p.to_string(), *why);
        }
    }
    if (const auto pair = core::first_overlap(fresh)) {
        throw BindingConflict(pair->second, "", pair->first);
    }
    // && on inet: either contains the other (equal included), served by the
    // gist index on prefix. `fresh` holds no prefix its subscriber holds already.
    const auto taken = txn.exec_params(
        "SELECT p::text, b.prefix::text, s.external_id FROM unnest($1::cidr[]) AS p "
        "JOIN subscriber_bindings b ON b.prefix && p "
        "JOIN subscribers s ON s.id = b.subscriber_id "
        "WHERE tstzrange(b.valid_from, b.valid_until) && tstzrange(" +
            ts(2) + ", NULL) ORDER BY p, b.prefix LIMIT 1",
        prefix_array(fresh), to_micros(from));
    if (taken.empty()) {
        return;
    }
    const auto prefix = core::Prefix::parse(taken[0][0].as<std::string>());
    const auto held = core::Prefix::parse(taken[0][1].as<std::string>());
    if (!prefix || !held) {
        throw DatabaseError("unreadable binding " + taken[0][1].as<std::string>());
    }
    throw BindingConflict(*prefix, taken[0][2].as<std::string>(), *held);
}

}  // namespace ctquota::store
