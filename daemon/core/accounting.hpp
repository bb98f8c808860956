#pragma once
// Accounting: ledger -> attribution -> accumulation, for one stream of
// samples. Pure and single-threaded; the daemon feeds it from one thread and
// hands what it takes out to the store.

#include <atomic>
#include <memory>

#include "core/clock.hpp"
#include "core/flow_ledger.hpp"
#include "core/subscriber_index.hpp"
#include "core/usage_accumulator.hpp"
#include "core/usage_rules.hpp"

namespace ctquota::core {

enum class Direction : std::uint8_t {
    None = 0,
    OrigIsUpload = 1,    // the subscriber opened the connection
    OrigIsDownload = 2,  // opened from outside toward the subscriber
};

struct Attribution {
    SubscriberId subscriber = kUnattributed;
    Direction direction = Direction::None;
};

// Pre-NAT attribution: the original tuple is what the subscriber sent (or what
// was sent to it before DNAT); the reply source covers DNAT'ed inbound flows.
Attribution attribute(const SubscriberIndex& index, const FlowSample& s, TimePoint at);

// What apply() made of one sample: the ledger's verdict and, when the sample
// credited anything, whose it was. The flow records (daemon/sinks/) read it;
// the totals need nothing from it.
struct Applied {
    LedgerOutcome outcome = LedgerOutcome::Stale;
    bool attributed = false;  // `attribution` is set (the sample had a delta)
    Attribution attribution;
};

struct FlushBatch {
    UsageBatch usage;
    CheckpointChanges checkpoint;
    // The event journal's position after the last event in this batch (and
    // every batch before): what the next run need not replay once it is stored.
    std::uint64_t journal_position = 0;
    [[nodiscard]] bool empty() const { return usage.empty() && checkpoint.empty(); }
};

// The time a sample's usage belongs to (its hour, billing period, free
// window and the bindings that attribute it): the sample's own time, so
// that traffic read late (after a restart, a backlog) lands where it
// happened; `now` when it has none or an implausible one (ahead of `now`
// by more than kAsOfAhead, or older than kAsOfMaxAge: a clock that was
// wrong when the kernel stamped it).
inline constexpr std::chrono::seconds kAsOfAhead{120};
inline constexpr std::chrono::hours kAsOfMaxAge{24 * 7};
TimePoint usage_time(const FlowSample& s, TimePoint now, bool* implausible = nullptr);

struct AccountingStats {
    std::uint64_t samples = 0;
    std::uint64_t destroy_samples = 0;
    std::uint64_t unattributed_samples = 0;
    std::uint64_t unattributed_bytes = 0;
    FlowTuple last_unattributed;  // an example for the log: whose traffic is nobody's
    std::uint64_t dumps_completed = 0;
    std::uint64_t implausible_times = 0;  // samples whose own time was not used (usage_time)
    std::uint64_t late_drop_bytes = 0;    // dropped after their flow's DESTROY, not billed
};

// A DESTROY of a flow the kernel was dropping packets of waits this long
// before its final delta is billed: a packet counted before the entry died
// may be dropped just after (in flight on another CPU when ctquotad deleted
// the entry at a block, a vCPU stalled mid-path), and the kernel's map shows
// it only then. settle_finals() bills it after a read of the map that came
// later than this; take() bills whatever still waits.
inline constexpr std::chrono::milliseconds kFinalGrace{50};

class Accounting {
  public:
    // Without usage rules: the calendar month in UTC, every byte counted.
    explicit Accounting(const Clock& clock, std::shared_ptr<const UsageRules> rules = nullptr);

    void set_index(std::shared_ptr<const SubscriberIndex> index);
    // Periods and classes of deltas from now on (plans changed).
    void set_usage_rules(std::shared_ptr<const UsageRules> rules);
    Applied apply(const FlowSample& sample);
    Applied apply(const FlowSample& sample, TimePoint now);  // one clock read per batch
    // A batch's caller names the sample it will apply a few samples later.
    void prefetch(const FlowSample& sample) const { ledger_.prefetch(sample); }
    void dump_begin(std::uint64_t seq) {
        ledger_.dump_begin(seq);
        drops_.dump_begin(seq);
    }
    // Returns the flows declared lost (credited, then gone without a DESTROY).
    std::vector<CheckpointEntry> dump_end(std::uint64_t seq, bool complete);

    // Events applied so far came from the journal up to `position`.
    void journal_applied(std::uint64_t position) { journal_position_ = position; }
    // Bills the finals parked at least kFinalGrace ago (all of them with
    // `all`), less what the kernel dropped of their flows since their DESTROY.
    // Call it after a fresh read of the kernel's drops.
    void settle_finals(TimePoint now, bool all = false);
    [[nodiscard]] std::size_t parked_finals() const { return parked_.size(); }
    FlushBatch take(bool checkpoint_snapshot);
    // The batch taken last was committed (its checkpoint rows are stored).
    void committed(const FlushBatch& batch) { ledger_.changes_committed(batch.checkpoint); }
    void give_back(const FlushBatch& batch);
    // The stored checkpoint; `now` bounds the lost times its rows carry.
    void restore_ledger(const std::vector<CheckpointEntry>& entries, TimePoint now) {
        ledger_.restore(entries, now);
    }
    // After restore_ledger(): what an earlier run could not store and spilled
    // (the batch it held, its tombstones), as if that run had gone on.
    void restore_spill(const FlushBatch& batch, const std::vector<FlowKey>& tombstones,
                       TimePoint now);
    void reserve_flows(std::size_t flows) { ledger_.reserve(flows); }

    // The kernel's drops per flow (drops/), subtracted from what flows are credited.
    [[nodiscard]] DropTable& drops() { return drops_; }
    [[nodiscard]] const FlowLedger& ledger() const { return ledger_; }
    [[nodiscard]] const SubscriberIndex& index() const { return *index_; }
    [[nodiscard]] const AccountingStats& stats() const { return stats_; }
    [[nodiscard]] std::size_t pending_buckets() const { return usage_.pending_buckets(); }

  private:
    // A final delta held back for drops that come after its DESTROY.
    struct ParkedFinal {
        FlowSample sample;
        DroppedCounters used;  // the drops its final delta took
        Counters orig;         // its final delta
        Counters reply;
        Attribution attribution;
        TimePoint at;         // when its usage happened
        TimePoint parked_at;  // when it was applied
    };

    const Period& period_of(SubscriberId subscriber, TimePoint at);
    // Adds a delta to its subscriber's usage (or to the unattributed).
    void credit(const FlowSample& sample, const Attribution& a, TimePoint at, const Counters& orig,
                const Counters& reply);
    void settle(ParkedFinal& p);

    const Clock& clock_;
    FlowLedger ledger_;
    DropTable drops_;
    UsageAccumulator usage_;
    std::shared_ptr<const SubscriberIndex> index_;
    std::uint64_t index_generation_ = 1;
    std::shared_ptr<const UsageRules> rules_;
    // Each subscriber's current period: the rules are asked once per period, not per sample.
    tsl::robin_map<SubscriberId, Period> periods_;
    std::uint64_t journal_position_ = 0;
    std::vector<ParkedFinal> parked_;  // oldest first
    AccountingStats stats_;
};

}  // namespace ctquota::core
