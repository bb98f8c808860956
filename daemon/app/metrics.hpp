#pragma once
// Counters for every unit of work and every failure. Plain atomics, written by
// the threads that do the work and read by logs and (later) /metrics.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace ctquota::app {

struct Metrics {
    std::atomic<std::uint64_t> events_read{0};
    std::atomic<std::uint64_t> events_unparsed{0};
    std::atomic<std::uint64_t> enobufs{0};
    std::atomic<std::uint64_t> resyncs{0};
    std::atomic<std::uint64_t> queue_overflows{0};
    std::atomic<std::uint64_t> samples_dropped{0};
    std::atomic<std::uint64_t> dumps{0};
    std::atomic<std::uint64_t> dumps_incomplete{0};
    std::atomic<std::uint64_t> dump_entries{0};
    std::atomic<std::uint64_t> samples_applied{0};
    std::atomic<std::uint64_t> flows_tracked{0};
    std::atomic<std::uint64_t> flows_lost{0};
    std::atomic<std::uint64_t> duplicate_events{0};
    std::atomic<std::uint64_t> unattributed_bytes{0};
    std::atomic<std::uint64_t> flushes{0};
    std::atomic<std::uint64_t> flush_failures{0};
    std::atomic<std::uint64_t> db_errors{0};
    std::atomic<std::uint64_t> event_buffer_bytes{0};
    std::atomic<bool> reader_running{false};
    std::atomic<bool> database_ok{false};

    // Flush latency histogram (seconds), Prometheus-style cumulative buckets.
    static constexpr std::array<double, 8> kFlushBuckets = {0.005, 0.01, 0.025, 0.05,
                                                            0.1,   0.25, 0.5,   1.0};
    std::array<std::atomic<std::uint64_t>, kFlushBuckets.size() + 1> flush_latency{};
    std::atomic<std::uint64_t> flush_latency_us_sum{0};

    void observe_flush(std::chrono::microseconds d);
    [[nodiscard]] std::string render_prometheus() const;
};

}  // namespace ctquota::app
