#pragma once
// Which prefixes may be bound to a subscriber at all: inside the operator's
// subscriber pools and no shorter than a minimum per family, so that one
// mistaken binding (a /10, a /0) cannot make a block drop everyone. Whether a
// prefix collides with another binding is the store's business (it needs the
// stored bindings and a lock); this is the part that needs neither. Pure.

#include <optional>
#include <string>
#include <vector>

#include "core/address.hpp"

namespace ctquota::core {

struct BindingRules {
    // A binding must lie inside one of these; empty: anywhere.
    std::vector<Prefix> pools;
    // No binding shorter than these: a /24 is a small business, a /48 an IPv6 site.
    int min_ipv4_length = 24;
    int min_ipv6_length = 48;

    // Why `p` may not be bound (naming the limit or the pools), or nullopt.
    [[nodiscard]] std::optional<std::string> refusal(const Prefix& p) const;
};

// True when `inner` lies wholly inside `outer` (equal prefixes included).
bool covers(const Prefix& outer, const Prefix& inner);
// True when one of the two contains the other (equal included).
bool overlap(const Prefix& a, const Prefix& b);

// The first pair of `prefixes` that overlap (two entries of one request that
// would nest), or nullopt. Duplicates are not a pair: they are one binding.
std::optional<std::pair<Prefix, Prefix>> first_overlap(std::vector<Prefix> prefixes);

}  // namespace ctquota::core
