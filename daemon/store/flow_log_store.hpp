#pragma once
// The flow log (schema/016_flow_log.sql): per-connection records written by
// COPY in batches, day partitions created as records need them and dropped
// whole by retention, and the queries that read it back (who held a public
// address and port at a time; a subscriber's recent connections).

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/flow_record.hpp"
#include "store/database.hpp"
#include "store/flow_log_copy.hpp"

namespace ctquota::store {

class FlowLogStore {
  public:
    // `db` for the partitions and reads; the COPY goes through a connection of its own.
    FlowLogStore(Database& db, std::string gateway_id,
                 std::chrono::milliseconds statement_timeout = std::chrono::milliseconds(0));

    // All or nothing, in one transaction (COPY); the day partitions the
    // records need are created first. Throws DatabaseError.
    void write(std::span<const core::FlowRecord* const> records);
    // Creates the partition of the day holding `t` unless it exists.
    void ensure_partition(core::TimePoint t);
    // Drops every day partition that ends at or before `keep_from`; returns
    // their names. The partitions of other gateways' records go too: retention
    // is a property of the table.
    std::vector<std::string> drop_partitions_before(core::TimePoint keep_from);
    // The internal ids of the subscribers with these external ids (unknown ones are left out).
    std::vector<core::SubscriberId> subscriber_ids(const std::vector<std::string>& external_ids);

  private:
    void ensure_partitions(std::span<const core::FlowRecord* const> records);

    Database& db_;
    std::string gateway_id_;
    CopyConnection copy_;
    std::set<std::int64_t> partitions_;  // days (since the epoch) known to exist
};

// The name of the partition holding day `day` (days since 1970-01-01, UTC):
// flow_log_pYYYYMMDD.
std::string flow_log_partition_name(std::int64_t day);
// "2024-05-01 12:00:00.123456+00": a time as the flow log stores it (UTC, microseconds).
std::string flow_log_timestamp(std::int64_t unix_ns);
// The COPY text line of one record (columns as in schema/016, newline included).
void append_flow_log_line(std::string& out, const std::string& gateway_id,
                          const core::FlowRecord& r);

struct Endpoint {
    std::string address;
    std::uint16_t port = 0;
};

// One connection that held a public address and port.
struct NatHolder {
    std::optional<std::string> subscriber;  // external id; nullopt: nobody's
    std::string gateway_id;
    std::uint8_t l4proto = 0;
    Endpoint original_src;  // the initiator as it sent (pre-NAT)
    Endpoint original_dst;
    Endpoint reply_src;  // the far end as it answered
    Endpoint reply_dst;  // the initiator after NAT
    core::TimePoint start{};
    bool start_first_seen = false;
    core::TimePoint last_seen{};  // its last record's time
    bool ended = false;           // last_seen is its end (the final record)
    core::Counters orig;          // at its last record
    core::Counters reply;
    std::uint64_t conntrack_id = 0;
};

struct NatLookup {
    std::string address;  // canonical text
    std::uint16_t port = 0;
    core::TimePoint at{};
    std::optional<std::uint8_t> l4proto;
    std::optional<std::string> remote_address;  // the far end, as it saw the connection
    std::optional<std::uint16_t> remote_port;
};

class FlowLogQueries {
  public:
    explicit FlowLogQueries(Database& db) : db_(db) {}

    // Every connection with `address`:`port` as its public end whose
    // records span `at` (started at or before it, a record at or after it),
    // earliest start first, at most `limit`.
    std::vector<NatHolder> nat_holders(const NatLookup& q, std::size_t limit);

  private:
    Database& db_;
};

}  // namespace ctquota::store
