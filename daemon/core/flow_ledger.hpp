#pragma once
// FlowLedger: remembers, per live connection, the counters already credited,
// and turns every sample (dump or DESTROY) into a delta. For every connection
// the deltas sum to its final counters, whatever the interleaving of dumps,
// DESTROY events, duplicate events, restarts (checkpoint) and resyncs.
//
// A connection whose DESTROY arrives before any dump saw it is credited in
// full and kept only as a tombstone (to drop a resent DESTROY or a dump that
// raced it): its key alone, in a TombstoneSet beside the table, forgotten
// after two dumps and kTombstoneTtl and never checkpointed: short flows cost
// a key briefly and no checkpoint traffic.
//
// A flow missing from the dumps for long is declared lost: what it was
// credited is kept for kLostMemory, in the table and as a row of the
// checkpoint marked lost (with the time of the verdict), so that its DESTROY,
// even after a restart, credits only the rest.
//
// With the kernel's drops (DropTable) a flow is credited what was delivered:
// per direction, its counters less what was dropped after conntrack counted
// it. What is credited never goes down: a drop read after the dump that
// counted its packet holds the next deltas back until the flow's delivered
// bytes pass what was credited (the shortfall is carried, never taken back).

#include <tsl/robin_map.h>
#include <tsl/robin_set.h>

#include <cstdint>
#include <vector>

#include "core/clock.hpp"
#include "core/drop_table.hpp"
#include "core/flow.hpp"
#include "core/huge_page_allocator.hpp"
#include "core/tombstone_set.hpp"

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
    FlowTag final_tag;       // DESTROY of a polled flow: the tag it carried
};

// A row of the stored checkpoint: what a flow was credited so far. A flow
// declared lost keeps its row, marked lost since `lost_at`, until
// FlowLedger::kLostMemory has passed, so that its late DESTROY credits only
// the rest even after a restart.
struct CheckpointEntry {
    FlowKey key;
    Counters orig;
    Counters reply;
    bool lost = false;
    TimePoint lost_at{};  // when it was declared lost (lost rows only)
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
    std::uint64_t lost_flows = 0;      // credited flows that vanished without a DESTROY we saw
    std::uint64_t lost_recovered = 0;  // of those, flows whose DESTROY or a dump came later
};

class FlowLedger {
  public:
    // A credited flow absent from this many complete dumps in a row is declared
    // lost. Not fewer: a dump never shows a dying entry, and with reliable
    // delivery the kernel may hold a DESTROY back for seconds while the event
    // socket drains; until the flow is declared lost, its credited counters
    // stay, so a late DESTROY still credits only the rest.
    static constexpr std::uint32_t kMissedDumpsBeforeLost = 30;
    // A tombstone lives at least this long (and at least two dumps): a DESTROY
    // resent by reliable delivery, or a dump sample that raced it, must still
    // find it however short the poll interval is.
    static constexpr std::chrono::seconds kTombstoneTtl{10};
    // ...and at least this many dump boundaries: every dump that may have
    // started before the DESTROY (the one running and the next) must end first.
    static constexpr std::uint64_t kTombstoneDumps = 2;
    // What was credited for a flow declared lost is kept this long, so that a
    // DESTROY (or a dump) that shows up later credits only the rest.
    static constexpr std::chrono::hours kLostMemory{1};

    // `now` dates tombstones and lost flows (their lifetimes above).
    // `dropped`: what the kernel dropped of this flow so far (null: nothing).
    LedgerResult apply(const FlowSample& sample, TimePoint now,
                       const DroppedCounters* dropped = nullptr);
    LedgerResult apply(const FlowSample& sample) { return apply(sample, TimePoint{}); }
    // Starts loading what apply() of this DESTROY will probe first (the
    // tombstones' slots: a cache miss each, under sustained load), so that a
    // caller going through a batch overlaps the misses of the samples ahead.
    void prefetch(const FlowSample& sample) const {
        if (sample.kind == SampleKind::Destroy && unseen_.size() != 0) {
            unseen_.prefetch(FlowKeyHash{}(FlowKey::of(sample)));
        }
    }

    // A dump brackets its samples with begin/end. A known flow missing from
    // kMissedDumpsBeforeLost complete dumps in a row lost its DESTROY (downtime,
    // an overrun without reliable delivery): it is counted as lost; nothing is
    // invented for it, and what it was credited is remembered for kLostMemory,
    // in memory and in the checkpoint (its row is marked lost, then removed).
    // `now` (default: the end of time) decides which tombstones and lost
    // flows have lived long enough to be swept.
    void dump_begin(std::uint64_t seq);
    std::vector<CheckpointEntry> dump_end(std::uint64_t seq, bool complete,
                                          TimePoint now = TimePoint::max());

    // Checkpoint: what changed since the last call (or everything). At most
    // one set of changes is out at a time: it is then either committed or
    // returned before the next take.
    CheckpointChanges take_changes(bool snapshot);
    // The changes taken last are in the stored checkpoint now: their flows
    // have a stored row (upserts) or none any more (removals).
    void changes_committed(const CheckpointChanges& changes);
    // Puts changes that could not be stored back, so the next take includes them.
    void return_changes(const CheckpointChanges& changes);
    // Restores the stored checkpoint: live rows as live flows, lost rows as
    // lost flows (not counted as lost again) remembered until kLostMemory
    // after the time they were declared lost (a time after `now` is `now`).
    void restore(const std::vector<CheckpointEntry>& entries, TimePoint now);
    // After restore(): the changes a run made since the stored checkpoint and
    // had not stored yet (a spill), and its tombstones, dated `now`.
    void restore_pending(const CheckpointChanges& changes, const std::vector<FlowKey>& tombstones,
                         TimePoint now);
    // Flows whose DESTROY was credited and whose tombstone is still kept.
    [[nodiscard]] std::vector<FlowKey> tombstone_keys() const;

    // Sizes the table for this many flows up front (e.g. nf_conntrack_max), so it
    // never rehashes a million entries in the middle of a burst; and each
    // tombstone generation for four times as many: a generation holds 10-20 s
    // of short flows, which at 50k flows/s is several times nf_conntrack_max.
    // Its keys are address space until used (4 bytes a key are touched up
    // front, for the index), so growing it, and copying a million keys in the
    // middle of a burst, waits for a rate higher still.
    void reserve(std::size_t flows) {
        entries_.reserve(flows);
        unseen_.reserve(flows * 4);
    }

    [[nodiscard]] std::size_t live_flows() const { return entries_.size() - dead_ - lost_; }
    [[nodiscard]] std::size_t tombstones() const { return dead_ + unseen_.size(); }
    [[nodiscard]] std::size_t lost_remembered() const { return lost_; }
    [[nodiscard]] const LedgerStats& stats() const { return stats_; }
    // Bookkeeping that waits for the next checkpoint; bounded by the flows in
    // the table and the rows of the stored checkpoint, never by the flows that
    // came and went while the database was away.
    [[nodiscard]] std::size_t pending_removals() const { return removed_keys_.size(); }
    [[nodiscard]] std::size_t dirty_backlog() const { return dirty_keys_.size(); }

  private:
    // Live: in the kernel's table as far as we know, checkpointed.
    // Dead: a tombstone of a flow that had an entry; the flow's DESTROY was
    // credited, and any later sample for it (a resent event, a dump that raced
    // the event) is dropped; swept after two dumps and kTombstoneTtl. (Flows
    // that never had an entry are tombstoned in unseen_ instead.)
    // Lost: declared lost; checkpointed as lost (with dead_at); a later sample
    // credits only what exceeds the counters below and makes it Live again;
    // swept, and its row removed, after kLostMemory.
    enum class State : std::uint8_t { Live, Dead, Lost };

    struct Entry {
        Counters orig;  // credited so far
        Counters reply;
        std::uint64_t last_seen_dump = 0;
        std::uint64_t dead_since_dump = 0;
        TimePoint dead_at{};  // when it became Dead or Lost
        std::uint32_t missed_dumps = 0;
        State state = State::Live;
        [[nodiscard]] bool dead() const { return state == State::Dead; }
        bool dirty = false;   // changed since the last take; key is in dirty_keys_
        bool stored = false;  // the committed checkpoint has a row for it
        FlowTag tag;
    };

    // A flow with drops: the raw counters last seen (a reset is judged on
    // them, not on what was credited) and the drops that belong to a life
    // before a counter reset. In memory only: after a restart the credited
    // counters are a lower bound of the raw ones.
    struct DropLife {
        Counters raw_orig;
        Counters raw_reply;
        DroppedCounters base;
    };

    LedgerResult apply_poll(const FlowKey& key, const FlowSample& s, const DroppedCounters* d);
    LedgerResult apply_destroy(const FlowKey& key, const FlowSample& s, TimePoint now,
                               const DroppedCounters* d);
    // A DESTROY of a flow that has no entry: credited in full (or dropped as a
    // resend) with its key kept in unseen_ only; false when an entry is due
    // after all (the flow has one, or a stored row of its key awaits removal).
    // False when the flow has an entry (`found`, or null when it must be
    // made again: a stored row of the same key).
    bool destroy_unseen(const FlowKey& key, const FlowSample& s, TimePoint now,
                        const DroppedCounters* d, LedgerResult& r, Entry*& found);
    DropLife* life_of(const FlowKey& key, const Entry& e, bool inserted, bool has_drops);
    // A Lost entry that hears of its flow again is counted as recovered.
    void leave_lost(Entry& e);
    // The entry's state as a stored row says it (Live or Lost since when).
    void take_row_state(Entry& e, const CheckpointEntry& row, TimePoint now);
    static CheckpointEntry row_of(const FlowKey& key, const Entry& e) {
        const bool lost = e.state == State::Lost;
        return CheckpointEntry{key, e.orig, e.reply, lost, lost ? e.dead_at : TimePoint{}};
    }
    // dump_end's verdict on one entry: true when it is to be erased.
    bool sweep(const FlowKey& key, Entry& e, std::uint64_t seq, bool complete, TimePoint now,
               std::vector<CheckpointEntry>& lost);
    // What a poll and a DESTROY credit alike: full (delivered) counters for a
    // new entry or after a counter reset, the growth otherwise; the entry's
    // credited counters follow. Null when a tombstone absorbed the sample.
    // `found`: the flow's entry when the caller looked it up already.
    Entry* credit(const FlowKey& key, const FlowSample& s, const DroppedCounters* d,
                  LedgerResult& r, Entry* found = nullptr);
    void mark_dirty(const FlowKey& key, Entry& e);
    // Before erasing: a row of the stored checkpoint must still be removed.
    void forget(const FlowKey& key, const Entry& e) {
        if (e.stored) {
            removed_keys_.insert(key);
        }
    }

    // Open addressing (robin hood) with the hash stored beside each key: a flat
    // table is what makes 2M+ samples/s on one core possible; node-based maps
    // spend their time in malloc, and comparing large keys only on a hash match
    // keeps probing cheap.
    // Its buckets live on huge pages (HugePageAllocator): a probe is one cache
    // miss, not also a TLB miss.
    using EntryMap = tsl::robin_map<FlowKey, Entry, FlowKeyHash, std::equal_to<FlowKey>,
                                    HugePageAllocator<std::pair<FlowKey, Entry>>, true>;
    EntryMap entries_;
    tsl::robin_map<FlowKey, DropLife, FlowKeyHash> lives_;  // flows with drops only
    // Tombstones of flows whose DESTROY came before any dump saw them.
    TombstoneSet unseen_{kTombstoneDumps, kTombstoneTtl};
    std::size_t dead_ = 0;
    std::size_t lost_ = 0;
    // Keys of dirty entries, and of entries erased since they became dirty
    // (skipped at the take; compacted once they outnumber the entries).
    std::vector<FlowKey> dirty_keys_;
    // Stored rows whose entries are gone: their removal is still to be committed.
    tsl::robin_set<FlowKey, FlowKeyHash, std::equal_to<FlowKey>, std::allocator<FlowKey>, true>
        removed_keys_;
    std::uint64_t current_dump_ = 0;
    std::uint64_t last_started_dump_ = 0;
    LedgerStats stats_;
};

}  // namespace ctquota::core
