#pragma once
// SampleQueue: the hand-off between the netlink readers and the accounting
// thread. With reliable event delivery the event reader waits for room when
// the queue is full (the kernel keeps dying entries until their DESTROY is
// read, so waiting loses nothing, while dropping would lose flows that a
// resync can never bring back); without it, it drops, counts and resyncs.
// The dump may only fill part of the queue: the rest is kept for events, so
// a dump of a large table never makes the event reader wait.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "core/flow.hpp"

namespace ctquota::runtime {

struct QueueItem {
    enum class Kind { Samples, DumpBegin, DumpEnd } kind = Kind::Samples;
    std::vector<core::FlowSample> samples;
    std::uint64_t seq = 0;
    bool complete = false;
    std::uint64_t journal_end = 0;  // events: the journal position after the last one
};

class SampleQueue {
  public:
    // Who pushes: the dump lane gets half of the capacity, events all of it.
    enum class Lane : std::uint8_t { Events, Dump };

    explicit SampleQueue(std::size_t capacity_samples) : capacity_(capacity_samples) {}

    bool try_push(QueueItem&& item);  // false when full; never blocks
    // Waits for room in `lane` (an item larger than the lane goes into an
    // empty queue); false when the queue was closed while waiting. `waited`,
    // when given, is set to whether it had to wait.
    bool push_wait(QueueItem&& item, Lane lane, bool* waited = nullptr);
    // Moves everything queued into `out`; waits up to `timeout` for the first item.
    // False once the queue is closed and drained.
    bool pop_all(std::deque<QueueItem>& out, std::chrono::milliseconds timeout);
    void close();
    [[nodiscard]] std::size_t queued_samples() const;

  private:
    static std::size_t weight(const QueueItem& item) { return item.samples.size(); }
    [[nodiscard]] std::size_t limit(Lane lane) const {
        return lane == Lane::Events ? capacity_ : capacity_ / 2;
    }

    mutable std::mutex mu_;
    std::condition_variable not_empty_;
    std::condition_variable not_full_;
    std::deque<QueueItem> items_;
    std::size_t samples_ = 0;
    std::size_t capacity_;
    bool closed_ = false;
};

}  // namespace ctquota::runtime
