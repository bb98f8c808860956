#pragma once
// FlowLedger: remembers, per live connection, the counters already credited,
// and turns every sample (dump or DESTROY) into a delta. For every connection
// the deltas sum to its final counters, whatever the interleaving of dumps,
// DESTROY events, duplicate events, restarts (checkpoint) and resyncs.
//
// Only connections seen by a dump get an entry; a connection whose DESTROY
// arrives first is credited in full and never stored, so short flows cost no
// ledger memory and no checkpoint traffic.

#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/flow.hpp"

namespace ctquota::core {

enum class LedgerOutcome : std::uint8_t {
    FirstSeen,     // poll of an unknown flow: full counters credited
    Progress,      // poll of a known flow: difference credited
    Final,         // DESTROY of a known flow: difference credited, entry dropped
    FinalUnseen,   // DESTROY of a flow never polled: full counters credited
    Duplicate,     // DESTROY seen twice (reliable delivery, resend): nothing credited
    Stale,         // poll sample of a flow already destroyed (dump raced the event)
    CounterReset,  // counters went backwards (id+tuple reused, or zeroed by someone else)
};

// Space the caller may use to cache per-flow facts (the attribution) in the
// ledger entry, so a long-lived flow is looked up in the index once.
struct FlowTag {
    std::uint64_t generation = 0;  // 0 = empty
    std::int64_t subscriber = -1;
    std::uint8_t direction = 0;
};

struct LedgerResult {
    LedgerOutcome outcome = LedgerOutcome::FirstSeen;
    Counters orig_delta;
    Counters reply_delta;
    FlowTag* tag = nullptr;  // valid until the next call that modifies the ledger; null for DESTROY
};

struct CheckpointEntry {
    FlowKey key;
    Counters orig;
    Counters reply;
};

struct CheckpointChanges {
    bool snapshot = false;  // true: `upserts` is the whole ledger and replaces what was stored
    std::vector<CheckpointEntry> upserts;
    std::vector<FlowKey> removals;
    [[nodiscard]] bool empty() const { return !snapshot && upserts.empty() && removals.empty(); }
};

struct LedgerStats {
    std::uint64_t duplicates = 0;
    std::uint64_t stale = 0;
    std::uint64_t counter_resets = 0;
    std::uint64_t lost_flows = 0;  // credited flows that vanished without a DESTROY we saw
};

class FlowLedger {
  public:
    LedgerResult apply(const FlowSample& sample);

    // A dump brackets its samples with begin/end. A complete dump that misses a
    // known flow twice in a row means its DESTROY was lost (ENOBUFS, downtime):
    // the flow is dropped and counted as lost; nothing is invented for it.
    void dump_begin(std::uint64_t seq);
    std::vector<CheckpointEntry> dump_end(std::uint64_t seq, bool complete);

    // Checkpoint: what changed since the last call (or everything).
    CheckpointChanges take_changes(bool snapshot);
    // Puts changes that could not be stored back, so the next take includes them.
    void return_changes(const CheckpointChanges& changes);
    void restore(const std::vector<CheckpointEntry>& entries);

    [[nodiscard]] std::size_t live_flows() const { return entries_.size(); }
    [[nodiscard]] std::size_t tombstones() const { return tombstones_.size(); }
    [[nodiscard]] const LedgerStats& stats() const { return stats_; }

  private:
    struct Entry {
        Counters orig;
        Counters reply;
        std::uint64_t last_seen_dump = 0;
        std::uint32_t missed_dumps = 0;
        FlowTag tag;
    };

    LedgerResult apply_poll(const FlowKey& key, const FlowSample& s);
    LedgerResult apply_destroy(const FlowKey& key, const FlowSample& s);
    void mark_dirty(const FlowKey& key) { dirty_.insert(key); }

    std::unordered_map<FlowKey, Entry, FlowKeyHash> entries_;
    std::unordered_map<FlowKey, std::uint64_t, FlowKeyHash> tombstones_;  // -> dump seq at death
    std::unordered_set<FlowKey, FlowKeyHash> dirty_;
    std::uint64_t current_dump_ = 0;
    std::uint64_t last_started_dump_ = 0;
    LedgerStats stats_;
};

}  // namespace ctquota::core
