#pragma once
// Start-up: what the stored totals do not cover goes through the accountant
// before it starts: a spill of the last run when it still follows the stored
// flush, then the journaled events after it (or after the stored position),
// oldest first.

#include <cstddef>
#include <cstdint>

#include "metrics/metrics.hpp"
#include "runtime/accountant.hpp"
#include "runtime/event_journal.hpp"
#include "store/usage_store.hpp"

namespace ctquota::runtime {

// `stored`: the last committed flush (UsageStore::load_stored_flush); `end`:
// where the events read before going live end (Readers::go_live). A stored
// position of this journal covers the events before it; without one (or one
// of another journal) no stored total covers any of this journal's events.
// Returns how many events were replayed.
std::size_t replay_journal(EventJournal& journal, const store::StoredFlush& stored,
                           std::uint64_t end, Accountant& accountant, metrics::Metrics& metrics);

}  // namespace ctquota::runtime
