#pragma once
// SinkChannel: one sink's bounded queue and the thread that drains it into
// the sink. push() never blocks: when the queue holds `capacity` records a
// batch is dropped, counted and logged (at most once a minute), so a slow or
// dead sink never stalls the accountant, the readers or the totals. A write
// that fails keeps its batches and is retried with backoff while new records
// queue up behind it (and are dropped once the queue is full).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "metrics/record_metrics.hpp"
#include "sinks/record_sink.hpp"

namespace ctquota::sinks {

struct ChannelOptions {
    std::size_t capacity = 262144;  // records waiting, at most
    // A write starts once this many wait, or once the first of them waited
    // `linger`; it takes about this many (at least one batch).
    std::size_t batch_records = 10000;
    std::chrono::milliseconds linger{1000};
    std::chrono::milliseconds tick{1000};  // RecordSink::tick() at least this often
    std::chrono::milliseconds retry_max{30000};
};

class SinkChannel {
  public:
    SinkChannel(std::unique_ptr<RecordSink> sink, ChannelOptions options,
                metrics::SinkMetrics& metrics);
    ~SinkChannel();
    SinkChannel(const SinkChannel&) = delete;
    SinkChannel& operator=(const SinkChannel&) = delete;

    void start();
    // Never blocks on the sink; false when the batch was dropped (queue full).
    bool push(const RecordBatch& batch);
    // Stops taking records and writes what is queued for up to `grace`; what
    // is left then is counted as dropped.
    void stop(std::chrono::nanoseconds grace);

  private:
    void loop();
    // Waits for records (or a tick) and moves them out; false once stopped and empty.
    bool take(std::vector<RecordBatch>& out);
    bool write(const std::vector<RecordBatch>& batches);
    void failed(const char* what, const std::exception& e, bool periodic);
    void log_drops();

    std::unique_ptr<RecordSink> sink_;
    ChannelOptions options_;
    metrics::SinkMetrics& metrics_;
    std::mutex mu_;
    std::condition_variable wake_;
    std::deque<RecordBatch> queue_;
    std::size_t queued_ = 0;
    bool stopping_ = false;
    std::chrono::steady_clock::time_point deadline_{};  // stop(): give up writing after this
    std::uint64_t drops_logged_ = 0;
    std::chrono::steady_clock::time_point next_drop_log_{};
    std::chrono::steady_clock::time_point next_tick_error_log_{};  // channel thread only
    std::thread thread_;
};

}  // namespace ctquota::sinks
