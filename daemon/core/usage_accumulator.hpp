#pragma once
// UsageAccumulator: per-subscriber pending deltas between flushes, bucketed by
// billing period and by hour. Memory grows with subscribers x hours pending,
// never with events, so a long database outage stays bounded.

#include <tsl/robin_map.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "core/clock.hpp"
#include "core/flow.hpp"
#include "core/subscriber_index.hpp"

namespace ctquota::core {

struct Usage {
    Counters up;
    Counters down;
    Usage& operator+=(const Usage& o) {
        up += o.up;
        down += o.down;
        return *this;
    }
    bool operator==(const Usage&) const = default;
};

struct PeriodUsage {
    SubscriberId subscriber = 0;
    TimePoint period_start{};
    Usage usage;
};

struct HourUsage {
    SubscriberId subscriber = 0;  // kUnattributed for traffic that matched no subscriber
    TimePoint hour{};
    TimePoint period_start{};  // the billing period these bytes belong to
    Usage usage;
};

inline constexpr SubscriberId kUnattributed = -1;

struct UsageBatch {
    std::vector<PeriodUsage> periods;     // attributed only
    std::vector<HourUsage> hours;         // attributed
    std::vector<HourUsage> unattributed;  // subscriber == kUnattributed; up = orig, down = reply
    [[nodiscard]] bool empty() const {
        return periods.empty() && hours.empty() && unattributed.empty();
    }
};

// Maps (subscriber, time) to the start of the billing period containing it.
using PeriodFn = std::function<TimePoint(SubscriberId, TimePoint)>;

class UsageAccumulator {
  public:
    // uniform_periods: the period does not depend on the subscriber (calendar month),
    // so the period function is asked once per hour instead of once per sample.
    explicit UsageAccumulator(PeriodFn period_of, bool uniform_periods = true);

    void add(SubscriberId subscriber, TimePoint at, const Usage& usage);
    void add_unattributed(TimePoint at, const Usage& usage);

    UsageBatch take();
    void merge_back(const UsageBatch& batch);

    [[nodiscard]] std::size_t pending_buckets() const { return buckets_.size(); }
    [[nodiscard]] bool empty() const { return buckets_.empty(); }

  private:
    struct BucketKey {
        SubscriberId subscriber = 0;
        std::int64_t hour = 0;    // hours since epoch
        std::int64_t period = 0;  // seconds since epoch
        bool operator==(const BucketKey&) const = default;
    };
    struct BucketKeyHash {
        std::size_t operator()(const BucketKey& k) const noexcept;
    };

    [[nodiscard]] std::int64_t period_seconds(SubscriberId subscriber, TimePoint at,
                                              std::int64_t hour);

    PeriodFn period_of_;
    tsl::robin_map<BucketKey, Usage, BucketKeyHash> buckets_;
    // One-entry memo: the period function is called once per hour per subscriber
    // class, not once per sample.
    std::int64_t memo_hour_ = INT64_MIN;
    std::int64_t memo_period_ = 0;
    bool uniform_periods_ = true;
};

}  // namespace ctquota::core
