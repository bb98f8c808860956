#pragma once
// Store-internal: the one check every new binding passes (BindingStore and
// SubscriberStore::add), inside the writing transaction. Active bindings are
// disjoint: a new prefix may neither equal, contain nor lie inside any
// binding active at or after its start, the subscriber's own included (a
// nested own prefix adds nothing to attribution and would outlive the wider
// one when that is released).
// Race-free because every binding writer takes one transaction-scoped
// advisory lock first: bindings change at RADIUS/DHCP rates, so one writer
// at a time costs nothing. Not a schema constraint: rows written under the
// old rule (nested prefixes were allowed) would make such a migration fail
// on gateways in service; they stay valid and only new bindings are judged.

#include <vector>

#include <pqxx/pqxx>

#include "core/address.hpp"
#include "core/binding_rules.hpp"
#include "core/clock.hpp"

namespace ctquota::store {

// Serialises binding writers until the transaction ends. Take it before any
// subscriber row lock, so that writers always lock in the same order.
void lock_bindings(pqxx::work& txn);

// Throws BindingRefused when `rules` refuse one of `fresh` (prefixes their
// subscriber does not hold yet), BindingConflict when one overlaps another
// of them or a binding active from `from` on. Needs lock_bindings first.
void check_new_bindings(pqxx::work& txn, const std::vector<core::Prefix>& fresh,
                        core::TimePoint from, const core::BindingRules& rules);

}  // namespace ctquota::store
