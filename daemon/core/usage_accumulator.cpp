#include "core/usage_accumulator.hpp"

#include <map>

namespace ctquota::core {
namespace {

constexpr std::int64_t kNanosPerHour = 3'600'000'000'000;

std::int64_t hours_since_epoch(TimePoint t) {
    const auto ns = t.time_since_epoch().count();
    return ns >= 0 ? ns / kNanosPerHour : (ns - kNanosPerHour + 1) / kNanosPerHour;
}

TimePoint hour_to_time(std::int64_t hour) {
    return TimePoint{std::chrono::nanoseconds{hour * kNanosPerHour}};
}

// Period bounds are kept to the microsecond: the database keeps them so, and
// the policy engine finds a period row by its exact start.
std::int64_t micros_of(TimePoint t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

TimePoint micros_to_time(std::int64_t us) {
    return TimePoint{std::chrono::microseconds{us}};
}

Counters minus(const Counters& a, const Counters& b) {
    return Counters{a.bytes >= b.bytes ? a.bytes - b.bytes : 0,
                    a.packets >= b.packets ? a.packets - b.packets : 0};
}

}  // namespace

Usage minus(const Usage& a, const Usage& b) {
    return Usage{minus(a.up, b.up), minus(a.down, b.down)};
}

void ClassifiedUsage::add(UsageClass cls, const Usage& u) {
    usage += u;
    if (cls == UsageClass::Free) {
        free += u;
    } else if (cls == UsageClass::ZeroRated) {
        zero_rated += u;
    }
}

std::size_t UsageAccumulator::BucketKeyHash::operator()(const BucketKey& k) const noexcept {
    std::uint64_t h = static_cast<std::uint64_t>(k.subscriber) * 0x9e3779b97f4a7c15ull;
    h ^= static_cast<std::uint64_t>(k.hour) + 0x7f4a7c15ull + (h << 6) + (h >> 2);
    h ^= static_cast<std::uint64_t>(k.period) + (h << 6) + (h >> 2);
    h ^= static_cast<std::uint64_t>(k.cls) << 61;
    return static_cast<std::size_t>(h);
}

void UsageAccumulator::add_bucket(const BucketKey& key, std::int64_t period_end,
                                  const Usage& usage) {
    auto& bucket = buckets_[key];
    bucket.usage += usage;
    bucket.period_end = period_end;
}

void UsageAccumulator::add(SubscriberId subscriber, TimePoint at, const Period& period,
                           UsageClass cls, const Usage& usage) {
    add_bucket(BucketKey{subscriber, hours_since_epoch(at), micros_of(period.start), cls},
               micros_of(period.end), usage);
}

void UsageAccumulator::add_unattributed(TimePoint at, const Usage& usage) {
    add_bucket(BucketKey{kUnattributed, hours_since_epoch(at), 0, UsageClass::Counted}, 0, usage);
}

UsageBatch UsageAccumulator::take() {
    UsageBatch batch;
    // One row per (subscriber, hour, period) and per (subscriber, period): the
    // classes of a bucket are parts of the same row.
    std::map<std::tuple<SubscriberId, std::int64_t, std::int64_t>, HourUsage> hours;
    std::map<std::pair<SubscriberId, std::int64_t>, PeriodUsage> periods;
    for (const auto& [key, bucket] : buckets_) {
        if (key.subscriber == kUnattributed) {
            HourUsage h;
            h.subscriber = kUnattributed;
            h.hour = hour_to_time(key.hour);
            h.usage = bucket.usage;
            batch.unattributed.push_back(h);
            continue;
        }
        auto& h = hours[{key.subscriber, key.hour, key.period}];
        h.subscriber = key.subscriber;
        h.hour = hour_to_time(key.hour);
        h.period_start = micros_to_time(key.period);
        h.period_end = micros_to_time(bucket.period_end);
        h.add(key.cls, bucket.usage);
        auto& p = periods[{key.subscriber, key.period}];
        p.subscriber = key.subscriber;
        p.period_start = h.period_start;
        p.period_end = h.period_end;
        p.add(key.cls, bucket.usage);
    }
    batch.hours.reserve(hours.size());
    for (auto& [key, h] : hours) {
        batch.hours.push_back(h);
    }
    batch.periods.reserve(periods.size());
    for (auto& [key, p] : periods) {
        batch.periods.push_back(p);
    }
    buckets_.clear();
    return batch;
}

void UsageAccumulator::merge_back(const UsageBatch& batch) {
    // Hours carry everything the periods do; rebuild the buckets from them.
    for (const auto& h : batch.hours) {
        const BucketKey key{h.subscriber, hours_since_epoch(h.hour), micros_of(h.period_start),
                            UsageClass::Counted};
        const auto end = micros_of(h.period_end);
        const Usage counted = minus(minus(h.usage, h.free), h.zero_rated);
        if (counted != Usage{} || (h.free == Usage{} && h.zero_rated == Usage{})) {
            add_bucket(key, end, counted);
        }
        if (h.free != Usage{}) {
            add_bucket(BucketKey{key.subscriber, key.hour, key.period, UsageClass::Free}, end,
                       h.free);
        }
        if (h.zero_rated != Usage{}) {
            add_bucket(BucketKey{key.subscriber, key.hour, key.period, UsageClass::ZeroRated}, end,
                       h.zero_rated);
        }
    }
    for (const auto& h : batch.unattributed) {
        add_unattributed(h.hour, h.usage);
    }
}

}  // namespace ctquota::core
