#pragma once
// Read queries behind the REST API: one subscriber with its current usage,
// pages of subscribers, pages of a billing cycle's usage. Pages are keyset
// paginated on the external id (the database's collation order): a page
// starts strictly after the last id of the previous one, so rows inserted or
// removed meanwhile never make a page skip or repeat another's rows.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/accounting.hpp"
#include "store/database.hpp"

namespace ctquota::store {

struct SubscriberView {
    std::string external_id;
    core::TimePoint created_at{};
    std::vector<std::string> addresses;  // bindings valid at the query's time, CIDR text
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
    CycleUsage cycle;
};

class SubscriberQueries {
  public:
    explicit SubscriberQueries(Database& db) : db_(db) {}

    // An active (not removed) subscriber, its bindings valid at `now` and its
    // usage in the period starting at `cycle_start`.
    std::optional<SubscriberDetail> find(const std::string& external_id, core::TimePoint now,
                                         core::TimePoint cycle_start);
    // Up to `limit` active subscribers with ids after `after` ("" = from the
    // start) containing `q` (case-insensitive; "" = all), in id order.
    std::vector<SubscriberView> page(const std::string& q, const std::string& after,
                                     std::size_t limit, core::TimePoint now);
    // Up to `limit` subscribers with ids after `after` that had usage in the
    // cycle [start, end) or existed during it (with zeros), in id order.
    std::vector<CycleUsage> usage_page(core::TimePoint start, core::TimePoint end,
                                       const std::string& after, std::size_t limit);

    // The buckets in [from, to) that have usage, in time order (empty ones are
    // left out); nullopt when there is no active subscriber `external_id`.
    std::optional<std::vector<SeriesPoint>> usage_series(const std::string& external_id,
                                                         core::TimePoint from, core::TimePoint to,
                                                         SeriesUnit unit);

  private:
    Database& db_;
};

}  // namespace ctquota::store
