#include "runtime/journal_replay.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/spill_codec.hpp"

namespace ctquota::runtime {
namespace {

// The spill of the last run, when it follows the stored flush (no flush
// committed after it: that one would have carried all of it); restored into
// the accountant. Returns the journal position it covers.
std::optional<std::uint64_t> restore_spill(EventJournal& journal, const store::StoredFlush& stored,
                                           Accountant& accountant) {
    const auto bytes = journal.read_spill();
    if (!bytes) {
        return std::nullopt;
    }
    const auto spill = core::decode_spill(*bytes);
    if (!spill) {
        spdlog::error(
            "journal {}: the spill is damaged: what it held (the totals a database outage kept "
            "from being stored) is lost",
            journal.dir().string());
        journal.drop_spill();
        return std::nullopt;
    }
    if (spill->journal_id != journal.id() || spill->base_token != stored.token) {
        spdlog::info("journal {}: a flush committed after the last spill; spill dropped",
                     journal.dir().string());
        journal.drop_spill();
        return std::nullopt;
    }
    accountant.restore_spill(spill->batch, spill->tombstones);
    spdlog::warn(
        "journal {}: restored what the last run spilled during a database outage ({} hourly "
        "rows, {} checkpoint changes, {} tombstones)",
        journal.dir().string(), spill->batch.usage.hours.size(),
        spill->batch.checkpoint.upserts.size() + spill->batch.checkpoint.removals.size(),
        spill->tombstones.size());
    return spill->batch.journal_position;
}

}  // namespace

std::size_t replay_journal(EventJournal& journal, const store::StoredFlush& stored,
                           std::uint64_t end, Accountant& accountant, metrics::Metrics& metrics) {
    const auto& mark = stored.journal;
    const bool ours = mark && mark->journal_id == journal.id();
    if (mark && !ours) {
        spdlog::warn(
            "journal {}: the stored totals name journal {:016x}, this one is {:016x}; all of its "
            "events are replayed (none was counted), the other journal's are not here",
            journal.dir().string(), mark->journal_id, journal.id());
    }
    std::uint64_t covered = ours ? mark->position : 0;
    if (const auto spilled = restore_spill(journal, stored, accountant)) {
        covered = *spilled;
    }
    // This run's events were never flushed: the stored position may even lie
    // past them (a machine crash took the journal's tail).
    const std::uint64_t from = std::min(covered, journal.run_start());
    journal.covered(from);
    std::size_t before_start = 0;
    accountant.begin_replay();
    const auto n = journal.replay(from, end, [&](const core::FlowSample& s, std::uint64_t after) {
        before_start += after <= journal.run_start() ? 1 : 0;
        accountant.replay(s, after);
    });
    accountant.journal_applied(end);
    metrics.journal_replayed += n;
    spdlog::info(
        "journal {}: {} events replayed ({} left by an earlier run after its last flush, {} read "
        "while this one started)",
        journal.dir().string(), n, before_start, n - before_start);
    return n;
}

}  // namespace ctquota::runtime
