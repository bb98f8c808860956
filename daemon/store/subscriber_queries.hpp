#pragma once
// Read queries behind the REST API: one subscriber with its current usage,
// pages of subscribers, pages of a billing cycle's usage. Pages are keyset
// paginated on the external id (the database's collation order): a page
// starts strictly after the last id of the previous one, so rows inserted or
// removed meanwhile never make a page skip or repeat another's rows.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/accounting.hpp"
#include "store/database.hpp"
#include "store/quota_store.hpp"
#include "store/state_store.hpp"

namespace ctquota::store {

struct SubscriberView {
    std::string external_id;
    core::TimePoint created_at{};
    std::vector<std::string> addresses;  // bindings valid at the query's time, CIDR text
    std::optional<std::string> plan;     // nullopt: no plan (unlimited)
};

// The parts of a cycle's totals that do not count toward the quota (also
// included in the totals): in free windows, and to zero-rated destinations.
struct UncountedUsage {
    std::uint64_t free_up_bytes = 0;
    std::uint64_t free_down_bytes = 0;
    std::uint64_t zero_up_bytes = 0;
    std::uint64_t zero_down_bytes = 0;
};

struct CycleSpan {
    core::TimePoint start{};
    core::TimePoint end{};  // exclusive
};

struct CycleUsage {
    std::string external_id;
    core::Usage usage;  // summed over gateways
    std::optional<core::TimePoint> updated_at;
};

// One bucket of a usage time series, summed over gateways.
struct SeriesPoint {
    core::TimePoint start{};
    core::Usage usage;
};

// Buckets of usage_hourly: UTC hours, UTC days, or calendar months in UTC.
enum class SeriesUnit : std::uint8_t { Hour, Day, Month };

struct SubscriberDetail {
    SubscriberView subscriber;
    CycleUsage cycle;  // usage_period rows with period_start in [span.start, span.end)
    // What the policy evaluation needs, read by the same statement (one snapshot):
    core::SubscriberId id = 0;
    std::optional<std::string> plan_definition;  // the plan's JSON text
    CycleSpan span;
    UncountedUsage uncounted;
    std::optional<std::uint64_t> quota_override;  // of the cycle starting at span.start
    std::vector<TopUpRecord> topups;              // active at the query's time
    std::optional<SubscriberStateRecord> state;   // nullopt: normal since created_at
};

// The billing cycle containing `now` of a subscriber created at `created_at`
// on the plan `plan` defined by `plan_definition` (nullopt: no plan). Called
// by find() between reading and using the result; may throw (find() then
// throws the same).
using CycleOf =
    std::function<CycleSpan(core::TimePoint created_at, const std::optional<std::string>& plan,
                            const std::optional<std::string>& plan_definition)>;

// One row of a per-subscriber-cycle export: the subscriber's own cycle.
struct ExportRow {
    std::string external_id;
    std::optional<std::string> plan;
    CycleSpan span;
    core::Usage usage;  // usage_period rows with period_start in [span.start, span.end)
    std::optional<core::TimePoint> updated_at;
};

// One row of a time-range export: a subscriber's usage_hourly rows in one
// bucket (UTC hour or day), summed over gateways.
struct RangeRow {
    std::string external_id;
    std::optional<std::string> plan;  // of the subscriber now
    core::TimePoint start{};
    core::Usage usage;
    std::optional<core::TimePoint> updated_at;
};

// Filters of a subscriber listing; "" = any.
struct SubscriberFilter {
    std::string q;      // part of the id, case-insensitive
    std::string plan;   // exact plan name
    std::string state;  // normal | throttled | blocked (no stored state = normal)
    // CIDR text: also subscribers with a binding valid now that overlaps it
    // (an address inside a bound prefix finds its subscriber); "" = none.
    std::string address = "";
};

class SubscriberQueries {
  public:
    explicit SubscriberQueries(Database& db) : db_(db) {}

    // An active (not removed) subscriber, its bindings valid at `now` and its
    // usage in the period starting at `cycle_start`.
    std::optional<SubscriberDetail> find(const std::string& external_id, core::TimePoint now,
                                         core::TimePoint cycle_start);
    // The same with the cycle chosen by `cycle_of` (the subscriber's plan).
    std::optional<SubscriberDetail> find(const std::string& external_id, core::TimePoint now,
                                         const CycleOf& cycle_of);
    // The internal id and creation time of an active subscriber.
    struct Ref {
        core::SubscriberId id = 0;
        core::TimePoint created_at{};
        std::optional<std::string> plan;
        std::optional<std::string> plan_definition;
    };
    std::optional<Ref> ref(const std::string& external_id);
    // Up to `limit` active subscribers with ids after `after` ("" = from the
    // start) containing `q` (case-insensitive; "" = all), in id order.
    std::vector<SubscriberView> page(const std::string& q, const std::string& after,
                                     std::size_t limit, core::TimePoint now);
    std::vector<SubscriberView> page(const SubscriberFilter& filter, const std::string& after,
                                     std::size_t limit, core::TimePoint now);
    // Up to `limit` subscribers with ids after `after` that had usage in the
    // cycle [start, end) or existed during it (with zeros), in id order.
    std::vector<CycleUsage> usage_page(core::TimePoint start, core::TimePoint end,
                                       const std::string& after, std::size_t limit);
    // Up to `limit` subscribers with ids after `after`, each with its usage in
    // the cycle `cycle_of` picks for it (its plan's), in id order. Per id the
    // active subscriber is read, or without one the one removed last; it is
    // left out when it neither existed during that cycle nor has usage in it.
    // One REPEATABLE READ transaction: every row of a page is one snapshot.
    std::vector<ExportRow> cycle_usage_page(const std::string& after, std::size_t limit,
                                            const CycleOf& cycle_of);
    // Up to `limit` (subscriber, bucket) rows with usage in [from, to), unit
    // Hour or Day, ordered by id then bucket, after (after_id, after_start).
    std::vector<RangeRow> range_usage_page(core::TimePoint from, core::TimePoint to,
                                           SeriesUnit unit, const std::string& after_id,
                                           core::TimePoint after_start, std::size_t limit);

    // The buckets in [from, to) that have usage, in time order (empty ones are
    // left out); nullopt when there is no active subscriber `external_id`.
    std::optional<std::vector<SeriesPoint>> usage_series(const std::string& external_id,
                                                         core::TimePoint from, core::TimePoint to,
                                                         SeriesUnit unit);

  private:
    Database& db_;
};

}  // namespace ctquota::store
