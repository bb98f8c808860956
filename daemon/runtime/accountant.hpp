#pragma once
// Accountant: the one thread that owns core::Accounting. It drains the
// SampleQueue and hands batches to the flusher under a short lock.

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "core/accounting.hpp"
#include "metrics/metrics.hpp"
#include "runtime/sample_queue.hpp"

namespace ctquota::runtime {

class Accountant {
  public:
    Accountant(const core::Clock& clock, SampleQueue& queue, metrics::Metrics& metrics);
    ~Accountant();

    void restore_ledger(const std::vector<core::CheckpointEntry>& entries);
    void set_index(std::shared_ptr<const core::SubscriberIndex> index);
    void set_usage_rules(std::shared_ptr<const core::UsageRules> rules);
    void reserve_flows(std::size_t flows);
    void start();
    // Returns once the queue is closed and fully applied.
    void join();

    core::FlushBatch take(bool checkpoint_snapshot);
    void give_back(const core::FlushBatch& batch);

  private:
    void loop();
    void apply(QueueItem& item, core::TimePoint now);
    void publish_stats();
    void log_unattributed();

    const core::Clock& clock_;
    SampleQueue& queue_;
    metrics::Metrics& metrics_;
    std::mutex mu_;
    core::Accounting accounting_;
    std::thread thread_;
    std::uint64_t unattributed_logged_ = 0;  // bytes already reported in the log
    std::chrono::steady_clock::time_point next_unattributed_log_{};
};

}  // namespace ctquota::runtime
