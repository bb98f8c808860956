#pragma once
// Accountant: the one thread that owns core::Accounting. It drains the
// SampleQueue and hands batches to the flusher under a short lock. With a
// DropMap it reads the kernel's drops per flow before applying each batch
// (a DESTROY is sent after the drops of its flow were recorded, so its final
// credit sees them all) and erases the entries of finished flows after.

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "core/accounting.hpp"
#include "drops/drop_map.hpp"
#include "metrics/metrics.hpp"
#include "runtime/sample_queue.hpp"

namespace ctquota::sinks {
class RecordStage;
}

namespace ctquota::runtime {

class Accountant {
  public:
    Accountant(const core::Clock& clock, SampleQueue& queue, metrics::Metrics& metrics);
    ~Accountant();

    void restore_ledger(const std::vector<core::CheckpointEntry>& entries);
    void set_index(std::shared_ptr<const core::SubscriberIndex> index);
    void set_usage_rules(std::shared_ptr<const core::UsageRules> rules);
    void reserve_flows(std::size_t flows);
    // Before start(); null: bill what conntrack counted.
    void set_drop_map(const drops::DropMap* map) { drop_map_ = map; }
    // Before start(): events read by an earlier run (or by this one before it
    // went live), from the journal; `position` is where the journal ends them.
    // begin_replay() first reads the kernel's drops, which they are billed less.
    void begin_replay() { refresh_drops(); }
    void replay(const core::FlowSample& sample, std::uint64_t position);
    // Before start(): what an earlier run spilled (core/spill_codec.hpp).
    void restore_spill(const core::FlushBatch& batch, const std::vector<core::FlowKey>& tombstones);
    // Before start(): the events up to `position` are applied.
    void journal_applied(std::uint64_t position);
    // Flow records (daemon/sinks/): every applied sample also goes to `stage`,
    // on this thread, right after the ledger. Null (the default): none. Before start().
    void set_record_stage(sinks::RecordStage* stage) { records_ = stage; }
    void start();
    // Returns once the queue is closed and fully applied.
    void join();

    // With `tombstones`: the ledger's tombstones at the same moment (a spill).
    core::FlushBatch take(bool checkpoint_snapshot,
                          std::vector<core::FlowKey>* tombstones = nullptr);
    void committed(const core::FlushBatch& batch);
    void give_back(const core::FlushBatch& batch);

  private:
    void loop();
    void apply(QueueItem& item, core::TimePoint now);
    void apply_samples(const std::vector<core::FlowSample>& samples, core::TimePoint now);
    void refresh_drops();
    void settle_finals();
    void erase_finished_drops();
    void publish_stats();
    void log_unattributed();

    const core::Clock& clock_;
    SampleQueue& queue_;
    metrics::Metrics& metrics_;
    std::mutex mu_;
    core::Accounting accounting_;
    std::thread thread_;
    const drops::DropMap* drop_map_ = nullptr;
    std::uint64_t drops_seen_ = 0;  // the program's packet count at the last read
    std::vector<core::DropRecord> drop_records_;
    sinks::RecordStage* records_ = nullptr;
    std::uint64_t unattributed_logged_ = 0;  // bytes already reported in the log
    std::chrono::steady_clock::time_point next_unattributed_log_{};
};

}  // namespace ctquota::runtime
