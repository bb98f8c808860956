#pragma once
// UsageAccumulator: per-subscriber pending deltas between flushes, bucketed by
// billing period and by hour. Memory grows with subscribers x hours pending,
// never with events, so a long database outage stays bounded.

#include <tsl/robin_map.h>

#include <cstdint>
#include <vector>

#include "core/clock.hpp"
#include "core/flow.hpp"
#include "core/subscriber_index.hpp"
#include "core/usage_rules.hpp"

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

// a - b for b a part of a (never below zero).
Usage minus(const Usage& a, const Usage& b);

// A total and the parts of it that do not count toward the quota.
struct ClassifiedUsage {
    Usage usage;       // everything
    Usage free;        // the part inside free time windows
    Usage zero_rated;  // the part to zero-rated destinations
    ClassifiedUsage& operator+=(const ClassifiedUsage& o) {
        usage += o.usage;
        free += o.free;
        zero_rated += o.zero_rated;
        return *this;
    }
    void add(UsageClass cls, const Usage& u);
    bool operator==(const ClassifiedUsage&) const = default;
};

struct PeriodUsage : ClassifiedUsage {
    SubscriberId subscriber = 0;
    TimePoint period_start{};
    TimePoint period_end{};
};

struct HourUsage : ClassifiedUsage {
    SubscriberId subscriber = 0;  // kUnattributed for traffic that matched no subscriber
    TimePoint hour{};
    TimePoint period_start{};  // the billing period these bytes belong to
    TimePoint period_end{};
};

inline constexpr SubscriberId kUnattributed = -1;

// Rows of usage that all counts (tests, benchmarks, tools).
inline PeriodUsage period_usage(SubscriberId s, const Period& period, const Usage& u) {
    PeriodUsage p;
    p.usage = u;
    p.subscriber = s;
    p.period_start = period.start;
    p.period_end = period.end;
    return p;
}
inline HourUsage hour_usage(SubscriberId s, TimePoint hour, const Period& period, const Usage& u) {
    HourUsage h;
    h.usage = u;
    h.subscriber = s;
    h.hour = hour;
    h.period_start = period.start;
    h.period_end = period.end;
    return h;
}

struct UsageBatch {
    std::vector<PeriodUsage> periods;     // attributed only
    std::vector<HourUsage> hours;         // attributed
    std::vector<HourUsage> unattributed;  // subscriber == kUnattributed; up = orig, down = reply
    [[nodiscard]] bool empty() const {
        return periods.empty() && hours.empty() && unattributed.empty();
    }
};

class UsageAccumulator {
  public:
    void add(SubscriberId subscriber, TimePoint at, const Period& period, UsageClass cls,
             const Usage& usage);
    void add_unattributed(TimePoint at, const Usage& usage);

    UsageBatch take();
    void merge_back(const UsageBatch& batch);

    [[nodiscard]] std::size_t pending_buckets() const { return buckets_.size(); }
    [[nodiscard]] bool empty() const { return buckets_.empty(); }

  private:
    struct BucketKey {
        SubscriberId subscriber = 0;
        std::int64_t hour = 0;    // hours since epoch
        std::int64_t period = 0;  // microseconds since epoch
        UsageClass cls = UsageClass::Counted;
        bool operator==(const BucketKey&) const = default;
    };
    struct BucketKeyHash {
        std::size_t operator()(const BucketKey& k) const noexcept;
    };
    struct Bucket {
        Usage usage;
        std::int64_t period_end = 0;  // microseconds since epoch
    };

    void add_bucket(const BucketKey& key, std::int64_t period_end, const Usage& usage);

    tsl::robin_map<BucketKey, Bucket, BucketKeyHash> buckets_;
};

}  // namespace ctquota::core
