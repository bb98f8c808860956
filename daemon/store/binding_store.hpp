#pragma once
// Address bindings of one subscriber changed one at a time (RADIUS/DHCP hooks
// binding and releasing dynamic addresses) or as a whole set. A new binding
// must pass the configured core::BindingRules (BindingRefused) and overlap no
// binding active at or after its start (BindingConflict naming the holder):
// see binding_claims.hpp. A refused change changes nothing. The daemon's
// index notices the change through SubscriberStore::bindings_fingerprint.

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/address.hpp"
#include "core/binding_rules.hpp"
#include "core/clock.hpp"
#include "store/database.hpp"

namespace ctquota::store {

// A prefix the BindingRules refuse (outside the pools, shorter than allowed).
class BindingRefused : public std::invalid_argument {
  public:
    BindingRefused(std::string prefix, const std::string& reason)
        : std::invalid_argument(reason), prefix_(std::move(prefix)) {}
    [[nodiscard]] const std::string& prefix() const { return prefix_; }

  private:
    std::string prefix_;
};

// `prefix` overlaps (equals, contains or lies inside) `held_prefix`, bound to
// subscriber `holder`; an empty holder: another prefix of the same request.
class BindingConflict : public ConflictError {
  public:
    BindingConflict(const core::Prefix& prefix, std::string holder, const core::Prefix& held);
    [[nodiscard]] const std::string& prefix() const { return prefix_; }
    [[nodiscard]] const std::string& holder() const { return holder_; }
    [[nodiscard]] const std::string& held_prefix() const { return held_prefix_; }

  private:
    std::string prefix_;
    std::string holder_;
    std::string held_prefix_;
};

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
    BindingStore(Database& db, const core::BindingRules& rules) : db_(db), rules_(rules) {}

    // Binds `prefix` from `valid_from` on, open-ended. nullopt when there is no
    // active subscriber `external_id`; BindingRefused / BindingConflict as above.
    std::optional<BindResult> bind(const std::string& external_id, const core::Prefix& prefix,
                                   core::TimePoint valid_from);
    // Ends the subscriber's binding of `prefix` at `at` and cancels one that
    // had not started yet.
    UnbindResult unbind(const std::string& external_id, const core::Prefix& prefix,
                        core::TimePoint at);
    // From `at` on the subscriber holds exactly `prefixes`: bindings not in the
    // set end, missing ones start, the others stay untouched (and are not
    // judged again). False when there is no active subscriber; errors as for bind.
    bool replace(const std::string& external_id, const std::vector<core::Prefix>& prefixes,
                 core::TimePoint at);

  private:
    Database& db_;
    const core::BindingRules& rules_;
};

}  // namespace ctquota::store
