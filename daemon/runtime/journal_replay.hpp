#pragma once
// Start-up: the journaled events that the stored totals do not cover go
// through the accountant before it starts, oldest first.

#include <cstddef>
#include <cstdint>
#include <optional>

#include "metrics/metrics.hpp"
#include "runtime/accountant.hpp"
#include "runtime/event_journal.hpp"
#include "store/usage_store.hpp"

namespace ctquota::runtime {

// `mark`: what the last committed flush covered (UsageStore::load_journal_mark);
// `end`: where the events read before going live end (Readers::go_live).
// A mark of this journal covers the events before it; without one (or one of
// another journal) no stored total covers any of this journal's events.
// Returns how many were replayed.
std::size_t replay_journal(const EventJournal& journal,
                           const std::optional<store::JournalMark>& mark, std::uint64_t end,
                           Accountant& accountant, metrics::Metrics& metrics);

}  // namespace ctquota::runtime
