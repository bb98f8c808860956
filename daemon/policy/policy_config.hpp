#pragma once
// The parts of the configuration the policy engine reads ([policies] and the
// database it keeps its own connections to). app::Config holds them.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace ctquota::policy {

using namespace std::chrono_literals;

struct PoliciesConfig {
    std::filesystem::path dir = "/etc/ctquota/policies";  // one <plan>.toml per plan
    std::chrono::nanoseconds reconcile_interval = 60s;    // full kernel read-back and repair
    // Quota slices (core/quota_lease.hpp): a slice is lease_slice_time at the
    // gateway's recent rate, at least lease_min_bytes; a lease not renewed
    // within lease_ttl is free for the other gateways.
    // Off: each gateway arms its kernel quota with all that is left (exact
    // for a single gateway; several pass each other's unflushed traffic).
    bool leases = true;
    std::chrono::nanoseconds lease_ttl = 30s;
    std::chrono::nanoseconds lease_slice_time = 20s;
    std::uint64_t lease_min_bytes = 64 * 1024;
};

}  // namespace ctquota::policy
