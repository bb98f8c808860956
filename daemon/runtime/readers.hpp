#pragma once
// The two netlink threads: the DESTROY event reader and the periodic dumper.
// Neither touches the database or the accounting state; both only feed the
// SampleQueue (and the event reader the journal).
//
// With a journal the event reader starts at once (start_reading), before
// the database is reachable: what it reads goes to the journal only, and is
// replayed once the checkpoint is restored (go_live returns up to where);
// from go_live on it also goes to the queue. At shutdown stop_applying()
// turns it back to the journal only, so whatever arrives after the last
// flush's take is replayed by the next run instead of being lost.
// Reliable delivery (ConntrackConfig::reliable_events) is asked for when
// the event thread starts, never before: until somebody reads, the kernel
// would keep the dying entries that do not fit in the socket.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "conntrack/event_socket.hpp"
#include "core/clock.hpp"
#include "metrics/metrics.hpp"
#include "runtime/event_journal.hpp"
#include "runtime/runtime_config.hpp"
#include "runtime/sample_queue.hpp"

namespace ctquota::runtime {

class Readers {
  public:
    // The event socket's name in the service manager's fd store.
    static constexpr const char* kEventSocketName = "conntrack-events";

    // `journal` may be null (no journal: nothing is read before go_live).
    // The event socket is `adopt_fd` when one was handed back (fd store), a
    // new one otherwise, opened here: events are buffered from then on.
    Readers(const ConntrackConfig& config, SampleQueue& queue, metrics::Metrics& metrics,
            const core::Clock& clock, EventJournal* journal, int adopt_fd = -1);
    ~Readers();

    // With a journal: starts reading events into it (not into the queue yet).
    void start_reading();
    // Events read from now on go to the queue too; starts the dumps. Returns
    // the journal position up to which events were read before (0 without one).
    std::uint64_t go_live();
    // Events go to the journal only from now on (without one: reading stops);
    // no more dumps.
    void stop_applying();
    void stop();  // joins both threads
    void request_resync();
    // Hands the event socket to the service manager's fd store (when there is
    // one), so that it and the events queued in it outlive a crash.
    void keep_event_socket();

    [[nodiscard]] const conntrack::EventSocket& event_socket() const { return events_; }

  private:
    void start_event_thread();
    void event_loop();
    // How a round of reads ended: the socket is empty, the batch is as large
    // as one hand-off takes, or reading must pause (the journal or the socket
    // is failing).
    enum class ReadEnd : std::uint8_t { Drained, Full, Paused };
    ReadEnd read_events(std::vector<core::FlowSample>& batch,
                        const conntrack::EventSocket::Persist& persist_fn);
    void update_read_metrics();
    void dump_loop();
    bool dump_once(std::uint64_t seq);
    // Waits out the poll interval, longer while DESTROY events arrive fast
    // (ConntrackConfig::dump_defer_events_per_s); `lock` holds mu_.
    void wait_for_dump(std::unique_lock<std::mutex>& lock);
    void hand_off(std::vector<core::FlowSample>&& batch, std::uint64_t journal_end);
    void on_overrun();
    // Journals what was read (before it leaves the socket), stamped with its time.
    bool persist(std::span<core::FlowSample> samples);
    void stamp_events(std::span<core::FlowSample> samples) const;
    // Between batches: takes up a change of mode asked for by go_live/stop_applying.
    void follow_mode();

    const ConntrackConfig& config_;
    SampleQueue& queue_;
    metrics::Metrics& metrics_;
    const core::Clock& clock_;
    EventJournal* journal_;
    conntrack::EventSocket events_;  // opened in the constructor: events are buffered from then on
    std::uint64_t journal_end_ = 0;  // after the last record of this reader's batch
    std::atomic<bool> stopping_{false};
    std::mutex mu_;
    std::condition_variable wake_;
    bool resync_requested_ = false;
    // Mode of the event reader (under mu_): asked for, and taken up.
    bool live_wanted_ = false;
    bool live_ = false;  // written by the event thread only
    std::uint64_t live_from_ = 0;
    bool stop_dumps_ = false;
    std::chrono::steady_clock::time_point next_journal_error_log_{};
    std::thread event_thread_;
    std::thread dump_thread_;
};

}  // namespace ctquota::runtime
