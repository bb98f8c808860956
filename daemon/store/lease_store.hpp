#pragma once
// Quota slices in PostgreSQL (schema/020_quota_leases.sql): one transaction
// per batch locks the subscribers' rows (ordered, FOR NO KEY UPDATE, as the
// policy engine's recording does), reads every gateway's counted usage this
// cycle and the live leases, lets core::decide_lease decide this gateway's
// lease for each, and writes the grants. Expired or past-cycle rows of the
// batch's subscribers are deleted on the way (counted as expired).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/plan.hpp"
#include "core/quota_lease.hpp"
#include "core/subscriber_index.hpp"
#include "store/database.hpp"

namespace ctquota::store {

struct LeaseAsk {
    core::SubscriberId id = 0;
    core::TimePoint cycle_start{};
    core::CountedDirections counts = core::CountedDirections::Both;
    std::uint64_t block_limit = 0;
    std::uint64_t rate_bytes_per_second = 0;
    // This gateway's own counted bytes when it last settled / was last granted
    // (nullopt: unknown, e.g. after a restart).
    std::optional<std::uint64_t> counted_at_last_settle;
    std::optional<std::uint64_t> counted_at_last_grant;
    // Its last ask was refused: it still wants more (its traffic is dropped,
    // so no growth will say so) and asks again.
    bool refused_before = false;
    // Its kernel dropped the subscriber's traffic until lately (its quota had
    // run out): an idle lease is kept, as TCP comes back only after its
    // retransmission back-off, which may be longer than half a lease.
    bool stalled_lately = false;
};

struct LeaseOutcome {
    core::SubscriberId id = 0;
    std::uint64_t own_counted = 0;  // this gateway's stored counted bytes this cycle
    core::LeaseDecision decision;
};

struct LeaseBatch {
    std::vector<LeaseOutcome> outcomes;  // one per ask, in order
    std::uint64_t expired = 0;           // rows found expired and deleted
};

class LeaseStore {
  public:
    explicit LeaseStore(Database& db) : db_(db) {}

    // `gateway`'s leases for `asks`. Throws DatabaseError: nothing is written,
    // the caller keeps the slices it holds.
    LeaseBatch settle(const std::string& gateway, const std::vector<LeaseAsk>& asks,
                      const core::LeaseSettings& settings, core::TimePoint now);

  private:
    Database& db_;
};

}  // namespace ctquota::store
