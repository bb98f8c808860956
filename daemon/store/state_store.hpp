#pragma once
// What the policy engine last decided for each subscriber
// (subscriber_state in schema/006_policies.sql). No row means normal since
// the subscriber was created. The engine writes it; the API reads it.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/transaction>

#include "core/clock.hpp"
#include "core/subscriber_index.hpp"
#include "store/database.hpp"

namespace ctquota::store {

struct SubscriberStateRecord {
    core::SubscriberId subscriber_id = 0;
    std::string state = "normal";           // "normal" | "throttled" | "blocked"
    std::optional<std::uint64_t> down_bps;  // throttled only
    std::optional<std::uint64_t> up_bps;
    std::string reason;
    core::TimePoint since{};
    std::optional<core::TimePoint> cycle_start;  // the cycle warned_percent belongs to
    unsigned warned_percent = 0;                 // highest warning sent in that cycle
    core::TimePoint updated_at{};                // set by the database on upsert
};

class StateStore {
  public:
    explicit StateStore(Database& db) : db_(db) {}

    std::optional<SubscriberStateRecord> get(core::SubscriberId id);
    // Every stored row (the engine's start-up), by subscriber id.
    std::vector<SubscriberStateRecord> all();
    // Creates or replaces the row (updated_at = now()). Throws
    // std::invalid_argument for an unknown state or rates past INT64_MAX.
    void upsert(const SubscriberStateRecord& state);
    // In `txn`: locks the subscribers `ids` (the engines of several gateways
    // record decisions about the same subscribers, one after the other) and
    // returns their stored rows.
    static std::vector<SubscriberStateRecord> lock_rows(pqxx::work& txn,
                                                        const std::vector<core::SubscriberId>& ids);
    // The same for many rows in the caller's transaction, in one statement;
    // of two rows of one subscriber the later wins.
    static void upsert_all(pqxx::work& txn, const std::vector<SubscriberStateRecord>& states);

  private:
    Database& db_;
};

}  // namespace ctquota::store
