#pragma once
// UsageStore: writes a FlushBatch (period totals, hourly usage, unattributed
// usage, ledger checkpoint) in ONE transaction with set-based statements, and
// loads the checkpoint at start-up.

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/accounting.hpp"
#include "store/database.hpp"

namespace ctquota::store {

class UsageStore {
  public:
    UsageStore(Database& db, std::string gateway_id);

    // All or nothing; throws DatabaseError and leaves the database unchanged.
    // When the connection breaks during COMMIT, asks the database whether the
    // flush committed (by its token in gateway_flush) and returns normally if so.
    void flush(const core::FlushBatch& batch);
    // Snapshot + the deltas after it, replayed.
    std::vector<core::CheckpointEntry> load_checkpoint();
    // Bytes of checkpoint written since the last snapshot, to decide when to compact.
    [[nodiscard]] std::size_t checkpoint_bytes_since_snapshot() const { return since_snapshot_; }
    [[nodiscard]] std::size_t last_snapshot_bytes() const { return last_snapshot_; }

  private:
    // true/false: the flush with `token` did / did not commit; nullopt: cannot tell.
    std::optional<bool> committed(std::int64_t token);

    Database& db_;
    std::string gateway_id_;
    std::size_t since_snapshot_ = 0;
    std::size_t last_snapshot_ = 0;
    std::mt19937_64 tokens_;
};

}  // namespace ctquota::store
