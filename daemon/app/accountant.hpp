#pragma once
// Accountant: the one thread that owns core::Accounting. It drains the
// SampleQueue and hands batches to the flusher under a short lock.

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "app/metrics.hpp"
#include "app/pipeline.hpp"
#include "core/accounting.hpp"

namespace ctquota::app {

class Accountant {
  public:
    Accountant(const core::Clock& clock, SampleQueue& queue, Metrics& metrics);
    ~Accountant();

    void restore_ledger(const std::vector<core::CheckpointEntry>& entries);
    void set_index(std::shared_ptr<const core::SubscriberIndex> index);
    void set_policy(std::shared_ptr<const core::UsagePolicy> policy);
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
    Metrics& metrics_;
    std::mutex mu_;
    core::Accounting accounting_;
    std::thread thread_;
    std::uint64_t unattributed_logged_ = 0;  // bytes already reported in the log
    std::chrono::steady_clock::time_point next_unattributed_log_{};
};

}  // namespace ctquota::app
