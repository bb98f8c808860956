#pragma once
// SampleQueue: the hand-off between the netlink readers and the accounting
// thread. The event reader never waits: when the queue is full its batch is
// dropped, counted, and a resync is requested. The dump thread may wait.

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
};

class SampleQueue {
  public:
    explicit SampleQueue(std::size_t capacity_samples) : capacity_(capacity_samples) {}

    bool try_push(QueueItem&& item);  // false when full; never blocks
    // Waits for room; false when the queue was closed while waiting.
    bool push_wait(QueueItem&& item);
    // Moves everything queued into `out`; waits up to `timeout` for the first item.
    // False once the queue is closed and drained.
    bool pop_all(std::deque<QueueItem>& out, std::chrono::milliseconds timeout);
    void close();
    [[nodiscard]] std::size_t queued_samples() const;

  private:
    static std::size_t weight(const QueueItem& item) { return item.samples.size(); }

    mutable std::mutex mu_;
    std::condition_variable not_empty_;
    std::condition_variable not_full_;
    std::deque<QueueItem> items_;
    std::size_t samples_ = 0;
    std::size_t capacity_;
    bool closed_ = false;
};

}  // namespace ctquota::runtime
