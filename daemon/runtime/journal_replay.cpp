#include "runtime/journal_replay.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace ctquota::runtime {

std::size_t replay_journal(const EventJournal& journal,
                           const std::optional<store::JournalMark>& mark, std::uint64_t end,
                           Accountant& accountant, metrics::Metrics& metrics) {
    const bool ours = mark && mark->journal_id == journal.id();
    // This run's events were never flushed: the stored position may even lie
    // past them (a machine crash took the journal's tail).
    const std::uint64_t from = ours ? std::min(mark->position, journal.run_start()) : 0;
    if (mark && !ours) {
        spdlog::warn(
            "journal {}: the stored totals name journal {:016x}, this one is {:016x}; all of its "
            "events are replayed (none was counted), the other journal's are not here",
            journal.dir().string(), mark->journal_id, journal.id());
    }
    std::size_t before_start = 0;
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
