#pragma once
// The log of enforcement events (schema/006_policies.sql): state changes,
// usage warnings and cycle starts, written by the policy engine, read newest
// first by the API. insert_all() takes the caller's transaction, so the
// engine writes a round's events, states and webhook outbox rows atomically.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/subscriber_index.hpp"
#include "store/database.hpp"

#include <pqxx/transaction>

namespace ctquota::store {

struct NewEvent {
    core::SubscriberId subscriber_id = 0;
    std::optional<core::TimePoint> at;  // nullopt: the database's now()
    std::string kind;                   // "state" | "warning" | "cycle"
    std::optional<std::string> from_state;
    std::optional<std::string> to_state;
    std::string reason;
    std::optional<std::uint64_t> counted_bytes;
    std::optional<std::uint64_t> allowance_bytes;
    std::string detail_json = "{}";  // a JSON object
};

struct EventRecord {
    std::int64_t id = 0;
    core::SubscriberId subscriber_id = 0;
    core::TimePoint at{};
    std::string kind;
    std::optional<std::string> from_state;
    std::optional<std::string> to_state;
    std::string reason;
    std::optional<std::uint64_t> counted_bytes;
    std::optional<std::uint64_t> allowance_bytes;
    std::string detail_json;
};

class EventStore {
  public:
    explicit EventStore(Database& db) : db_(db) {}

    // Returns the new event's id. Throws std::invalid_argument for an unknown
    // kind, a detail that is not a JSON object or bytes past INT64_MAX.
    std::int64_t insert(const NewEvent& event);
    // The same for many events in the caller's transaction, in one statement
    // whatever their number; their ids, in order.
    static std::vector<std::int64_t> insert_all(pqxx::work& txn,
                                                const std::vector<NewEvent>& events);

    // Newest first: events of `id` with ids below `before_id` (0: from the newest), up to `limit`.
    std::vector<EventRecord> page(core::SubscriberId id, std::int64_t before_id, std::size_t limit);

  private:
    Database& db_;
};

}  // namespace ctquota::store
