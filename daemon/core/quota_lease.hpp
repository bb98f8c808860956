#pragma once
// Quota slices ("leases") of a subscriber's allowance, one per gateway, the
// way Diameter credit control grants units to each enforcement point (RFC
// 4006 / RFC 8506). Pure: the store reads the shares and writes the decision
// under the subscriber's row lock, the policy engine arms the kernel with it.
//
// A lease is a ceiling on what ONE gateway may count for the subscriber this
// cycle: that gateway's own counted bytes may grow up to `ceiling`. Grants
// keep, for every subscriber,
//     sum over gateways of max(counted, live ceiling) <= block limit,
// so the gateways together can never be granted more than what is left; what
// each passes past its ceiling is only the kernel's crossing slack.

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/clock.hpp"
#include "core/plan_evaluation.hpp"

namespace ctquota::core {

struct LeaseSettings {
    std::uint64_t min_slice_bytes = 64 * 1024;
    // A slice is this long at the gateway's recent rate for the subscriber.
    std::chrono::nanoseconds slice_time = std::chrono::seconds(3);  // config default: 20 s
    // A lease not renewed within this long is free for the other gateways.
    std::chrono::nanoseconds ttl = std::chrono::seconds(30);
};

// One gateway's part of a subscriber's cycle, as stored.
struct GatewayShare {
    std::uint64_t counted_bytes = 0;       // its own counted usage this cycle
    std::optional<std::uint64_t> ceiling;  // its live lease (same cycle, not expired)
};

struct LeaseRequest {
    std::uint64_t block_limit = 0;  // counted bytes (all gateways) where blocking starts
    GatewayShare own;
    TimePoint own_expires{};  // when own.ceiling is set
    std::vector<GatewayShare> others;
    std::uint64_t rate_bytes_per_second = 0;  // this gateway's recent rate for the subscriber
    std::size_t gateways_alive = 1;  // gateways flushing lately (a rate-less slice's divisor)
    // Own counted bytes grew since the last grant: an idle gateway near its
    // lease's expiry gives it back instead of renewing.
    bool active = true;
    // Own counted bytes grew since this gateway last looked (its traffic,
    // flushed): only then does a gateway without a lease ask for one, so that
    // a gateway the subscriber does not use holds none of the allowance.
    bool grew = true;
    TimePoint now{};
};

enum class LeaseAction : std::uint8_t {
    Keep,    // the live lease is enough and not about to expire: nothing written
    Grant,   // a new lease (none was live)
    Renew,   // more bytes, or the same lease for longer (or fewer: the allowance fell)
    Denied,  // more was wanted and nothing is left: the live lease (if any) is extended
    Lapse,   // idle near expiry: given back, ceiling = what it counted
    Idle,    // no lease and no new traffic here: none asked, ceiling = what it counted
};
const char* to_string(LeaseAction);

struct LeaseDecision {
    LeaseAction action = LeaseAction::Keep;
    std::uint64_t ceiling = 0;  // the gateway's own counted bytes may reach this
    TimePoint expires_at{};     // Grant/Renew/Denied with a lease: now + ttl
    [[nodiscard]] bool holds_lease() const {
        return action != LeaseAction::Lapse && action != LeaseAction::Idle &&
               expires_at != TimePoint{};
    }
};

// The slice to ask for: `slice_time` at `rate` (no rate known yet: what is
// left divided among the gateways alive, so that a single gateway keeps the
// whole allowance armed as before leases), at least `min_slice_bytes`, at
// most what is left divided among the gateways sharing the subscriber (but
// never below the minimum: the grant itself caps it at what is left).
std::uint64_t slice_bytes(const LeaseSettings& s, std::uint64_t rate_bytes_per_second,
                          std::uint64_t left, std::size_t sharing, std::size_t alive = 1);

LeaseDecision decide_lease(const LeaseSettings& s, const LeaseRequest& r);

// The gateway's kernel quota in an epoch (its counter started at zero when
// the gateway had counted `base`): up to `ceiling` plus `slack`, less `base`
// (an epoch after a used-up one starts past the ceiling it had: the slack is
// spent), at least 1 byte (nft then drops every packet).
std::uint64_t epoch_quota_bytes(std::uint64_t ceiling, std::uint64_t base, std::uint64_t slack);

// The ceiling armed after decision `d` in an epoch armed at `last`: a lease's,
// else never above `last` (it would follow the bytes the slack let through,
// a slack more with every flush while another gateway holds the rest).
std::uint64_t armed_ceiling(std::uint64_t last, const LeaseDecision& d);

}  // namespace ctquota::core
