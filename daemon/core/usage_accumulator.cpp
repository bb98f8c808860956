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

TimePoint seconds_to_time(std::int64_t s) {
    return TimePoint{std::chrono::seconds{s}};
}

}  // namespace

std::size_t UsageAccumulator::BucketKeyHash::operator()(const BucketKey& k) const noexcept {
    std::uint64_t h = static_cast<std::uint64_t>(k.subscriber) * 0x9e3779b97f4a7c15ull;
    h ^= static_cast<std::uint64_t>(k.hour) + 0x7f4a7c15ull + (h << 6) + (h >> 2);
    h ^= static_cast<std::uint64_t>(k.period) + (h << 6) + (h >> 2);
    return static_cast<std::size_t>(h);
}

UsageAccumulator::UsageAccumulator(PeriodFn period_of, bool uniform_periods)
    : period_of_(std::move(period_of)), uniform_periods_(uniform_periods) {}

std::int64_t UsageAccumulator::period_seconds(SubscriberId subscriber, TimePoint at,
                                              std::int64_t hour) {
    if (uniform_periods_ && hour == memo_hour_) {
        return memo_period_;
    }
    const auto start = period_of_(subscriber, at);
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(start.time_since_epoch());
    if (uniform_periods_) {
        memo_hour_ = hour;
        memo_period_ = secs.count();
    }
    return secs.count();
}

void UsageAccumulator::add(SubscriberId subscriber, TimePoint at, const Usage& usage) {
    const std::int64_t hour = hours_since_epoch(at);
    const std::int64_t period = period_seconds(subscriber, at, hour);
    buckets_[BucketKey{subscriber, hour, period}] += usage;
}

void UsageAccumulator::add_unattributed(TimePoint at, const Usage& usage) {
    buckets_[BucketKey{kUnattributed, hours_since_epoch(at), 0}] += usage;
}

UsageBatch UsageAccumulator::take() {
    UsageBatch batch;
    std::map<std::pair<SubscriberId, std::int64_t>, Usage> periods;
    for (const auto& [key, usage] : buckets_) {
        const TimePoint hour = hour_to_time(key.hour);
        if (key.subscriber == kUnattributed) {
            batch.unattributed.push_back(HourUsage{kUnattributed, hour, {}, usage});
            continue;
        }
        batch.hours.push_back(HourUsage{key.subscriber, hour, seconds_to_time(key.period), usage});
        periods[{key.subscriber, key.period}] += usage;
    }
    batch.periods.reserve(periods.size());
    for (const auto& [key, usage] : periods) {
        batch.periods.push_back(PeriodUsage{key.first, seconds_to_time(key.second), usage});
    }
    buckets_.clear();
    return batch;
}

void UsageAccumulator::merge_back(const UsageBatch& batch) {
    // Hours carry everything the periods do; rebuild buckets from them.
    for (const auto& h : batch.hours) {
        const auto period =
            std::chrono::duration_cast<std::chrono::seconds>(h.period_start.time_since_epoch());
        buckets_[BucketKey{h.subscriber, hours_since_epoch(h.hour), period.count()}] += h.usage;
    }
    for (const auto& h : batch.unattributed) {
        buckets_[BucketKey{kUnattributed, hours_since_epoch(h.hour), 0}] += h.usage;
    }
}

}  // namespace ctquota::core
