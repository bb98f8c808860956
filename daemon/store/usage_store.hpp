#pragma once
// UsageStore: writes a FlushBatch (period totals, hourly usage, unattributed
// usage, ledger checkpoint) in ONE transaction with set-based statements, and
// loads the checkpoint at start-up.

#include <string>
#include <vector>

#include "core/accounting.hpp"
#include "store/database.hpp"

namespace ctquota::store {

class UsageStore {
  public:
    UsageStore(Database& db, std::string gateway_id);

    // All or nothing; throws DatabaseError and leaves the database unchanged.
    void flush(const core::FlushBatch& batch);
    // Snapshot + the deltas after it, replayed.
    std::vector<core::CheckpointEntry> load_checkpoint();
    // Bytes of checkpoint written since the last snapshot, to decide when to compact.
    [[nodiscard]] std::size_t checkpoint_bytes_since_snapshot() const { return since_snapshot_; }
    [[nodiscard]] std::size_t last_snapshot_bytes() const { return last_snapshot_; }

  private:
    Database& db_;
    std::string gateway_id_;
    std::size_t since_snapshot_ = 0;
    std::size_t last_snapshot_ = 0;
};

}  // namespace ctquota::store
