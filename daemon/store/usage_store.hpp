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

// The connection broke during COMMIT and the database could not be asked
// whether the flush committed: the batch is neither written nor unwritten.
// The caller keeps it aside (never merges it into the next one, which could
// count it twice) until resolve_in_doubt() knows.
class InDoubtError : public DatabaseError {
  public:
    using DatabaseError::DatabaseError;
};

// What the stored totals of a gateway cover of its event journal.
struct JournalMark {
    std::uint64_t journal_id = 0;
    std::uint64_t position = 0;
};

// The gateway's last committed flush.
struct StoredFlush {
    std::uint64_t token = 0;             // 0: none yet
    std::optional<JournalMark> journal;  // the journal position it stored, if any
};

class UsageStore {
  public:
    UsageStore(Database& db, std::string gateway_id);

    // Every flush from now on stores the batch's journal position as a
    // position in this journal (without: no position is stored).
    void set_journal(std::uint64_t journal_id) { journal_id_ = journal_id; }
    // The last committed flush: its token and journal position.
    StoredFlush load_stored_flush();
    // The token of the last flush known to have committed (loaded, written or
    // resolved); 0 when none is known.
    [[nodiscard]] std::uint64_t last_token() const { return last_token_; }

    // All or nothing; throws DatabaseError and leaves the database unchanged.
    // When the connection breaks during COMMIT, asks the database whether the
    // flush committed (by its token in gateway_flush) and returns normally if
    // so; throws InDoubtError when it cannot tell. No flush may follow an
    // InDoubtError before resolve_in_doubt() answered.
    void flush(const core::FlushBatch& batch);
    // After an InDoubtError: true/false when the database says the flush
    // did / did not commit; nullopt while it cannot tell (ask again later).
    std::optional<bool> resolve_in_doubt();
    [[nodiscard]] bool in_doubt() const { return in_doubt_.has_value(); }
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
    std::optional<std::int64_t> in_doubt_;  // the token of a flush whose COMMIT is in doubt
    std::optional<std::uint64_t> journal_id_;
    std::uint64_t last_token_ = 0;
};

}  // namespace ctquota::store
