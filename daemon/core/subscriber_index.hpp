#pragma once
// SubscriberIndex: longest-prefix match of an address to the subscriber whose
// binding covers it at a given time. Immutable once built; the daemon swaps in
// a new index when bindings change, so lookups never take a lock.

#include <tsl/robin_map.h>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/address.hpp"
#include "core/clock.hpp"

namespace ctquota::core {

using SubscriberId = std::int64_t;

struct Binding {
    SubscriberId subscriber = 0;
    Prefix prefix;
    TimePoint valid_from{};
    std::optional<TimePoint> valid_until;  // exclusive; nullopt = open-ended
};

class SubscriberIndex {
  public:
    SubscriberIndex() = default;
    explicit SubscriberIndex(std::vector<Binding> bindings);

    [[nodiscard]] std::optional<SubscriberId> lookup(const IpAddress& address, TimePoint at) const;
    [[nodiscard]] std::size_t size() const { return bindings_.size(); }

  private:
    struct Span {
        std::uint32_t begin = 0;
        std::uint32_t count = 0;
    };
    struct V6Key {
        std::uint64_t hi = 0;
        std::uint64_t lo = 0;
        int length = 0;
        bool operator==(const V6Key&) const = default;
    };
    struct V4KeyHash {
        std::size_t operator()(std::uint64_t k) const noexcept {
            k *= 0x9e3779b97f4a7c15ull;  // the table is a power of two: mix the high bits down
            return static_cast<std::size_t>(k ^ (k >> 29));
        }
    };
    struct V6KeyHash {
        std::size_t operator()(const V6Key& k) const noexcept;
    };

    [[nodiscard]] std::optional<SubscriberId> pick(Span span, TimePoint at) const;
    [[nodiscard]] std::optional<SubscriberId> lookup_v4(const IpAddress& a, TimePoint at) const;
    [[nodiscard]] std::optional<SubscriberId> lookup_v6(const IpAddress& a, TimePoint at) const;

    std::vector<Binding> bindings_;  // grouped by prefix, each group sorted by valid_from
    tsl::robin_map<std::uint64_t, Span, V4KeyHash> v4_;  // (masked address << 8 | length)
    tsl::robin_map<V6Key, Span, V6KeyHash> v6_;
    std::vector<int> v4_lengths_;  // prefix lengths in use, longest first
    std::vector<int> v6_lengths_;
};

}  // namespace ctquota::core
