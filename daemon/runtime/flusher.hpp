#pragma once
// Flusher: the only thread that talks to PostgreSQL while the daemon runs.
// Every flush interval it takes what the accountant gathered and writes it in
// one transaction; on failure it hands it back and retries with backoff, so a
// database outage delays totals but loses nothing. It also refreshes the
// subscriber index when bindings change.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "metrics/metrics.hpp"
#include "runtime/accountant.hpp"
#include "runtime/event_journal.hpp"
#include "runtime/runtime_config.hpp"
#include "store/subscriber_store.hpp"
#include "store/usage_store.hpp"

namespace ctquota::runtime {

class Flusher {
  public:
    Flusher(const AccountingConfig& config, const core::Clock& clock, store::Database& db,
            Accountant& accountant, metrics::Metrics& metrics);
    ~Flusher();

    // Loads the subscriber index now (start-up); throws on database errors.
    void refresh_index(bool force);
    // The last committed flush (start-up; throws on database errors). The
    // flusher's spills name its token.
    store::StoredFlush load_stored_flush() { return usage_store_.load_stored_flush(); }
    // Called after each committed flush with the subscribers whose usage it changed.
    // After each flush that committed (with the subscribers it changed) or
    // found nothing to write (none), with the time it began.
    void on_flushed(std::function<void(const std::vector<core::SubscriberId>&,
                                       std::chrono::steady_clock::time_point)>
                        fn) {
        on_flushed_ = std::move(fn);
    }
    // Bindings changed (the policy engine heard it): reload the index now,
    // not at the next poll of the fingerprint.
    void index_changed() {
        index_dirty_ = true;
        wake_.notify_all();
    }
    // Each committed flush stores its journal position and lets the journal
    // drop what it covers; while flushes fail, what is held is spilled once
    // `spill_after_bytes` of the journal are not covered. Before start().
    void use_journal(EventJournal* journal, std::uint64_t spill_after_bytes);
    void start();
    // Stops the loop and makes a last attempt (with retries up to `grace`) to write everything.
    bool stop_and_flush(std::chrono::nanoseconds grace);

  private:
    void loop();
    bool flush_once();
    // A batch whose COMMIT is in doubt: dropped once the database says it
    // committed, given back once it says it did not; false while it cannot tell.
    bool settle_in_doubt();
    // `taken`: when the batch was taken (all counted before it is in it).
    void flushed(const core::FlushBatch& batch, std::chrono::steady_clock::time_point started,
                 std::chrono::steady_clock::time_point taken);
    bool want_snapshot() const;
    [[nodiscard]] bool spill_due() const;
    void spill(const core::FlushBatch& batch, std::vector<core::FlowKey> tombstones);

    const AccountingConfig& config_;
    const core::Clock& clock_;
    store::Database& db_;
    store::UsageStore usage_store_;
    store::SubscriberStore subscribers_;
    Accountant& accountant_;
    metrics::Metrics& metrics_;
    EventJournal* journal_ = nullptr;
    std::uint64_t spill_after_bytes_ = 0;
    std::function<void(const std::vector<core::SubscriberId>&,
                       std::chrono::steady_clock::time_point)>
        on_flushed_;
    std::string bindings_fingerprint_;
    bool first_flush_ = true;
    std::optional<core::FlushBatch> in_doubt_;
    std::uint64_t failing_since_ = 0;  // consecutive failed flushes
    std::atomic<bool> stopping_{false};
    std::atomic<bool> index_dirty_{false};
    std::mutex mu_;
    std::condition_variable wake_;
    std::thread thread_;
};

}  // namespace ctquota::runtime
