#pragma once
// Address bindings of one subscriber changed one at a time (RADIUS/DHCP hooks
// binding and releasing dynamic addresses) or as a whole set. An address
// belongs to one subscriber at any instant (schema/003's exclusion
// constraint); a change that would break that is a ConflictError naming the
// holder, and changes nothing. The daemon's index notices the change through
// SubscriberStore::bindings_fingerprint.

#include <optional>
#include <string>
#include <vector>

#include "core/address.hpp"
#include "core/clock.hpp"
#include "store/database.hpp"

namespace ctquota::store {

struct BindingView {
    std::string prefix;  // CIDR text as PostgreSQL writes it
    core::TimePoint valid_from{};
    std::optional<core::TimePoint> valid_until;
};

struct BindResult {
    bool created = false;  // false: the subscriber held the address already
    BindingView binding;
};

enum class UnbindResult : std::uint8_t { Ended, NotBound, UnknownSubscriber };

class BindingStore {
  public:
    explicit BindingStore(Database& db) : db_(db) {}

    // Binds `prefix` from `valid_from` on, open-ended. nullopt when there is no
    // active subscriber `external_id`; ConflictError when another subscriber
    // holds the prefix at any time from `valid_from` on.
    std::optional<BindResult> bind(const std::string& external_id, const core::Prefix& prefix,
                                   core::TimePoint valid_from);
    // Ends the subscriber's binding of `prefix` at `at` and cancels one that
    // had not started yet.
    UnbindResult unbind(const std::string& external_id, const core::Prefix& prefix,
                        core::TimePoint at);
    // From `at` on the subscriber holds exactly `prefixes`: bindings not in the
    // set end, missing ones start, the others stay untouched. False when there
    // is no active subscriber; ConflictError as for bind.
    bool replace(const std::string& external_id, const std::vector<core::Prefix>& prefixes,
                 core::TimePoint at);

  private:
    Database& db_;
};

}  // namespace ctquota::store
