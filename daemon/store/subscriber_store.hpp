#pragma once
// Subscribers and their address bindings.

#include <optional>
#include <string>
#include <vector>

#include "core/accounting.hpp"
#include "core/binding_rules.hpp"
#include "core/subscriber_index.hpp"
#include "store/database.hpp"

namespace ctquota::store {

struct SubscriberRecord {
    core::SubscriberId id = 0;
    std::string external_id;
    std::vector<std::string> addresses;  // active bindings, CIDR text
};

struct UsageTotals {
    std::string external_id;
    core::TimePoint cycle_start{};
    core::Usage usage;
    std::optional<core::TimePoint> updated_at;
};

class SubscriberStore {
  public:
    explicit SubscriberStore(Database& db) : db_(db) {}

    // Throws ConflictError when the id exists already, BindingRefused /
    // BindingConflict (binding_store.hpp) when an address is refused by `rules`
    // or overlaps another binding, and std::invalid_argument for an id that is
    // empty, too long or has control characters. Default rules: the defaults
    // of the config ([subscribers]), for tests and tools without one.
    core::SubscriberId add(const std::string& external_id,
                           const std::vector<core::Prefix>& prefixes, core::TimePoint valid_from,
                           const core::BindingRules& rules = core::BindingRules{});
    // Ends the subscriber's bindings (history and usage stay); false if unknown.
    bool remove(const std::string& external_id, core::TimePoint at);
    std::vector<SubscriberRecord> list();
    // Every binding valid now or later, for the in-memory index.
    std::vector<core::Binding> load_bindings(core::TimePoint now);
    // A cheap value that changes whenever any binding is added, ended or removed
    // (e.g. count, max id and max valid_until as text); the daemon polls it to
    // know when to reload the index.
    std::string bindings_fingerprint();
    // Totals of the calendar month containing `now`, summed over gateways.
    std::optional<UsageTotals> current_usage(const std::string& external_id, core::TimePoint now);

  private:
    Database& db_;
};

}  // namespace ctquota::store
