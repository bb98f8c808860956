#include "core/subscriber_index.hpp"

#include <algorithm>
#include <cstring>
#include <map>

namespace ctquota::core {
namespace {

std::uint32_t v4_value(const IpAddress& a) {
    return (std::uint32_t{a.bytes[0]} << 24) | (std::uint32_t{a.bytes[1]} << 16) |
           (std::uint32_t{a.bytes[2]} << 8) | std::uint32_t{a.bytes[3]};
}

std::uint64_t v4_key(std::uint32_t masked, int length) {
    return (std::uint64_t{masked} << 8) | static_cast<std::uint64_t>(length);
}

std::uint32_t v4_mask(int length) {
    return length == 0 ? 0u : ~std::uint32_t{0} << (32 - length);
}

std::uint64_t be64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
        v = (v << 8) | p[i];
    }
    return v;
}

// Masks a 128-bit value (hi, lo) to its first `length` bits.
std::pair<std::uint64_t, std::uint64_t> v6_masked(std::uint64_t hi, std::uint64_t lo, int length) {
    if (length <= 0) {
        return {0, 0};
    }
    if (length < 64) {
        return {hi & (~std::uint64_t{0} << (64 - length)), 0};
    }
    if (length == 64) {
        return {hi, 0};
    }
    if (length < 128) {
        return {hi, lo & (~std::uint64_t{0} << (128 - length))};
    }
    return {hi, lo};
}

}  // namespace

std::size_t SubscriberIndex::V6KeyHash::operator()(const V6Key& k) const noexcept {
    std::uint64_t h = k.hi * 0x9e3779b97f4a7c15ull ^ (k.lo + static_cast<std::uint64_t>(k.length));
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return static_cast<std::size_t>(h ^ (h >> 32));
}

SubscriberIndex::SubscriberIndex(std::vector<Binding> bindings) {
    // Group by prefix, then by start time, so each prefix is one contiguous span.
    std::sort(bindings.begin(), bindings.end(), [](const Binding& a, const Binding& b) {
        if (a.prefix != b.prefix) {
            return a.prefix < b.prefix;
        }
        return a.valid_from < b.valid_from;
    });
    bindings_ = std::move(bindings);
    std::map<int, bool, std::greater<>> v4_lengths;
    std::map<int, bool, std::greater<>> v6_lengths;
    for (std::uint32_t i = 0; i < bindings_.size(); ++i) {
        const Prefix& p = bindings_[i].prefix;
        Span* span = nullptr;
        if (p.address.family == Family::V4) {
            span = &v4_[v4_key(v4_value(p.address), p.length)];
            v4_lengths[p.length] = true;
        } else {
            V6Key key{be64(p.address.bytes.data()), be64(p.address.bytes.data() + 8), p.length};
            span = &v6_[key];
            v6_lengths[p.length] = true;
        }
        if (span->count == 0) {
            span->begin = i;
        }
        ++span->count;
    }
    for (const auto& [len, _] : v4_lengths) {
        v4_lengths_.push_back(len);
    }
    for (const auto& [len, _] : v6_lengths) {
        v6_lengths_.push_back(len);
    }
}

std::optional<SubscriberId> SubscriberIndex::pick(Span span, TimePoint at) const {
    // Latest binding that started at or before `at` and has not ended.
    for (std::uint32_t i = span.begin + span.count; i-- > span.begin;) {
        const Binding& b = bindings_[i];
        if (b.valid_from <= at && (!b.valid_until || at < *b.valid_until)) {
            return b.subscriber;
        }
    }
    return std::nullopt;
}

std::optional<SubscriberId> SubscriberIndex::lookup_v4(const IpAddress& a, TimePoint at) const {
    const std::uint32_t value = v4_value(a);
    for (int len : v4_lengths_) {
        auto it = v4_.find(v4_key(value & v4_mask(len), len));
        if (it != v4_.end()) {
            if (auto s = pick(it->second, at)) {
                return s;
            }
        }
    }
    return std::nullopt;
}

std::optional<SubscriberId> SubscriberIndex::lookup_v6(const IpAddress& a, TimePoint at) const {
    const std::uint64_t hi = be64(a.bytes.data());
    const std::uint64_t lo = be64(a.bytes.data() + 8);
    for (int len : v6_lengths_) {
        auto [mhi, mlo] = v6_masked(hi, lo, len);
        auto it = v6_.find(V6Key{mhi, mlo, len});
        if (it != v6_.end()) {
            if (auto s = pick(it->second, at)) {
                return s;
            }
        }
    }
    return std::nullopt;
}

std::optional<SubscriberId> SubscriberIndex::lookup(const IpAddress& address, TimePoint at) const {
    switch (address.family) {
        case Family::V4:
            return lookup_v4(address, at);
        case Family::V6:
            return lookup_v6(address, at);
        case Family::None:
            break;
    }
    return std::nullopt;
}

}  // namespace ctquota::core
