#pragma once
// Quota overrides (one per subscriber and billing cycle) and top-ups
// (schema/006_policies.sql). Subscribers are named by their internal id; the
// API resolves external ids first. Cycles are computed by core/ (cycle_at):
// the store only keys overrides on the cycle's start.
//
// Top-ups are idempotent per (subscriber, idempotency key): a retry with the
// same request (same SHA-256) returns the top-up stored first, never a second
// credit, even when the retries race; the same key with another request is an
// IdempotencyKeyReused error and changes nothing.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/subscriber_index.hpp"
#include "store/database.hpp"

namespace ctquota::store {

struct QuotaOverride {
    core::TimePoint cycle_start{};
    std::uint64_t quota_bytes = 0;
    core::TimePoint created_at{};
};

struct TopUpRecord {
    std::int64_t id = 0;
    std::uint64_t bytes = 0;
    core::TimePoint created_at{};
    core::TimePoint expires_at{};
    std::optional<std::string> idempotency_key;
};

struct NewTopUp {
    std::uint64_t bytes = 0;  // 1 .. INT64_MAX
    core::TimePoint created_at{};
    core::TimePoint expires_at{};                // > created_at
    std::optional<std::string> idempotency_key;  // 1..255 bytes
    std::string request_sha256_hex;              // 64 hex digits; required with a key
};

struct TopUpResult {
    TopUpRecord topup;
    bool replayed = false;  // an earlier request with this key made it
};

class IdempotencyKeyReused : public ConflictError {
  public:
    using ConflictError::ConflictError;
};

// The subscriber's top-ups still active when the new one starts would sum
// past core::kMaxQuotaBytes (what makes an allowance fit the kernel and
// PostgreSQL: core::kMaxAllowanceBytes). Nothing was written.
class AllowanceLimitExceeded : public ConflictError {
  public:
    using ConflictError::ConflictError;
};

class QuotaStore {
  public:
    explicit QuotaStore(Database& db) : db_(db) {}

    // Creates or replaces the override of the cycle starting at `cycle_start`;
    // true when it was created. Throws std::invalid_argument past INT64_MAX.
    bool set_override(core::SubscriberId id, core::TimePoint cycle_start,
                      std::uint64_t quota_bytes);
    // false when there was none.
    bool delete_override(core::SubscriberId id, core::TimePoint cycle_start);
    std::optional<QuotaOverride> find_override(core::SubscriberId id, core::TimePoint cycle_start);

    // See the header comment. Throws std::invalid_argument for bytes of 0 or
    // past INT64_MAX, an expiry not after created_at, a bad key or hash;
    // AllowanceLimitExceeded (checked under the subscriber's row lock, after a
    // replay is answered) when the active top-ups would sum past the limit.
    TopUpResult add_topup(core::SubscriberId id, const NewTopUp& topup);
    // created_at <= now < expires_at, oldest expiry first.
    std::vector<TopUpRecord> active_topups(core::SubscriberId id, core::TimePoint now);
    // Newest first (by id), ids below `before_id` (0: from the newest); up to `limit`.
    std::vector<TopUpRecord> topups(core::SubscriberId id, std::int64_t before_id,
                                    std::size_t limit);

  private:
    Database& db_;
};

}  // namespace ctquota::store
