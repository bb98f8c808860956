#include "core/quota_lease.hpp"

#include <algorithm>
#include <limits>

namespace ctquota::core {
namespace {

std::uint64_t add_sat(std::uint64_t a, std::uint64_t b) {
    return a > std::numeric_limits<std::uint64_t>::max() - b
               ? std::numeric_limits<std::uint64_t>::max()
               : a + b;
}

std::uint64_t sub_floor(std::uint64_t a, std::uint64_t b) {
    return a > b ? a - b : 0;
}

// What the other gateways have taken or may still take.
std::uint64_t committed(const std::vector<GatewayShare>& shares) {
    std::uint64_t sum = 0;
    for (const auto& g : shares) {
        sum = add_sat(sum, std::max(g.counted_bytes, g.ceiling.value_or(0)));
    }
    return sum;
}

std::uint64_t counted_total(const LeaseRequest& r) {
    std::uint64_t sum = r.own.counted_bytes;
    for (const auto& g : r.others) {
        sum = add_sat(sum, g.counted_bytes);
    }
    return sum;
}

std::size_t sharing_gateways(const LeaseRequest& r) {
    return 1 + static_cast<std::size_t>(std::count_if(r.others.begin(), r.others.end(),
                                                      [](const auto& g) { return g.ceiling; }));
}

// Room by the others' live ceilings only (their usage where they hold none):
// what they pass past a ceiling (the crossing slack) shrinks nobody's lease.
std::uint64_t room_by_leases(const LeaseRequest& r) {
    std::uint64_t others = 0;
    for (const auto& g : r.others) {
        others = add_sat(others, g.ceiling.value_or(g.counted_bytes));
    }
    return sub_floor(r.block_limit, add_sat(others, r.own.counted_bytes));
}

}  // namespace

const char* to_string(LeaseAction a) {
    switch (a) {
        case LeaseAction::Keep:
            return "keep";
        case LeaseAction::Grant:
            return "grant";
        case LeaseAction::Renew:
            return "renew";
        case LeaseAction::Denied:
            return "denied";
        case LeaseAction::Lapse:
            return "lapse";
        case LeaseAction::Idle:
            return "idle";
    }
    return "?";
}

std::uint64_t slice_bytes(const LeaseSettings& s, std::uint64_t rate_bytes_per_second,
                          std::uint64_t left, std::size_t sharing, std::size_t alive) {
    const auto seconds = std::chrono::duration<double>(s.slice_time).count();
    const double wanted = static_cast<double>(rate_bytes_per_second) * seconds;
    std::uint64_t at_rate = wanted >= 1.8e19 ? std::numeric_limits<std::uint64_t>::max()
                                             : static_cast<std::uint64_t>(wanted);
    if (rate_bytes_per_second == 0) {
        at_rate = left / std::max<std::size_t>(alive, 1);
    }
    const std::uint64_t share = left / std::max<std::size_t>(sharing, 1);
    return std::max(s.min_slice_bytes, std::min(at_rate, share));
}

LeaseDecision decide_lease(const LeaseSettings& s, const LeaseRequest& r) {
    const auto slice =
        slice_bytes(s, r.rate_bytes_per_second, sub_floor(r.block_limit, counted_total(r)),
                    sharing_gateways(r), r.gateways_alive);
    const auto& own = r.own;
    const auto room = sub_floor(r.block_limit, add_sat(committed(r.others), own.counted_bytes));
    const TimePoint expires = r.now + s.ttl;
    if (const auto fits = room_by_leases(r);
        own.ceiling && *own.ceiling > add_sat(own.counted_bytes, fits)) {
        // The allowance fell under what was leased (a smaller override, a
        // top-up expired or withdrawn): the lease shrinks to what is left.
        if (fits == 0) {
            return LeaseDecision{LeaseAction::Denied, own.counted_bytes, {}};
        }
        return LeaseDecision{LeaseAction::Renew, own.counted_bytes + fits, expires};
    }
    if (own.ceiling) {
        const bool low = sub_floor(*own.ceiling, own.counted_bytes) < slice / 2;
        const bool expiring = r.own_expires - r.now < s.ttl / 2;
        if (!low && !r.active && expiring) {
            return LeaseDecision{LeaseAction::Lapse, own.counted_bytes, {}};
        }
        if (!low && !expiring) {
            return LeaseDecision{LeaseAction::Keep, *own.ceiling, r.own_expires};
        }
    }
    if (!own.ceiling && !r.grew) {
        return LeaseDecision{LeaseAction::Idle, own.counted_bytes, {}};
    }
    const auto held = std::max(own.ceiling.value_or(0), own.counted_bytes);
    const auto ceiling = std::max(held, add_sat(own.counted_bytes, std::min(slice, room)));
    if (ceiling <= own.counted_bytes) {
        return LeaseDecision{LeaseAction::Denied, own.counted_bytes, {}};
    }
    if (!own.ceiling) {
        return LeaseDecision{LeaseAction::Grant, ceiling, expires};
    }
    const bool wanted_more = sub_floor(*own.ceiling, own.counted_bytes) < slice / 2;
    const auto action =
        ceiling == *own.ceiling && wanted_more ? LeaseAction::Denied : LeaseAction::Renew;
    return LeaseDecision{action, ceiling, expires};
}

std::uint64_t epoch_quota_bytes(std::uint64_t ceiling, std::uint64_t base, std::uint64_t slack) {
    const auto limit = add_sat(ceiling, slack);
    return limit > add_sat(base, 1) ? limit - base : 1;
}

std::uint64_t armed_ceiling(std::uint64_t last, const LeaseDecision& d) {
    return d.holds_lease() ? d.ceiling : std::min(last, d.ceiling);
}

}  // namespace ctquota::core
