#include "core/binding_rules.hpp"

#include <algorithm>

namespace ctquota::core {

bool covers(const Prefix& outer, const Prefix& inner) {
    return outer.address.family == inner.address.family && outer.length <= inner.length &&
           outer.contains(inner.address);
}

bool overlap(const Prefix& a, const Prefix& b) {
    return covers(a, b) || covers(b, a);
}

std::optional<std::string> BindingRules::refusal(const Prefix& p) const {
    const bool v4 = p.address.family == Family::V4;
    const int minimum = v4 ? min_ipv4_length : min_ipv6_length;
    if (p.length < minimum) {
        return p.to_string() + " is shorter than the shortest " + (v4 ? "IPv4" : "IPv6") +
               " binding allowed, /" + std::to_string(minimum) + " (subscribers.min_" +
               (v4 ? "ipv4" : "ipv6") + "_prefix_length)";
    }
    if (pools.empty() || std::any_of(pools.begin(), pools.end(),
                                     [&](const Prefix& pool) { return covers(pool, p); })) {
        return std::nullopt;
    }
    std::string names;
    for (const auto& pool : pools) {
        names += (names.empty() ? "" : ", ") + pool.to_string();
    }
    return p.to_string() + " is outside the subscriber pools (" + names + "; subscribers.pools)";
}

std::optional<std::pair<Prefix, Prefix>> first_overlap(std::vector<Prefix> prefixes) {
    std::sort(prefixes.begin(), prefixes.end());
    prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
    for (std::size_t i = 0; i < prefixes.size(); ++i) {
        for (std::size_t j = i + 1; j < prefixes.size(); ++j) {
            if (overlap(prefixes[i], prefixes[j])) {
                return std::pair{prefixes[i], prefixes[j]};
            }
        }
    }
    return std::nullopt;
}

}  // namespace ctquota::core
