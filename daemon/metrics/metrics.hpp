#pragma once
// Counters for every unit of work and every failure. Plain atomics, written by
// the threads that do the work and read by logs and /metrics. Its own CMake
// target (ctquota_metrics), so the API can render it without linking the daemon.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <ostream>
#include <string>
#include <utility>

#include "metrics/record_metrics.hpp"

namespace ctquota::metrics {

// HTTP requests by route and status code, and latency by route. Routes are
// patterns ("/api/v1/subscribers/{id}", "unmatched"), so the label sets stay small.
class HttpMetrics {
  public:
    void observe(const std::string& route, int status, std::chrono::microseconds latency);
    void render(std::ostream& out) const;

    static constexpr std::array<double, 9> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,  0.1,    0.25,  1.0};

  private:
    struct Latency {
        std::array<std::uint64_t, kBuckets.size() + 1> buckets{};
        std::uint64_t sum_us = 0;
    };
    mutable std::mutex mu_;
    std::map<std::pair<std::string, int>, std::uint64_t> requests_;
    std::map<std::string, Latency> latency_;
};

// The HTTP server's connections and its refusals before any handler runs.
struct HttpConnectionMetrics {
    std::atomic<std::uint64_t> open{0};  // gauge
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> refused_address{0};   // over the per-address cap
    std::atomic<std::uint64_t> refused_full{0};      // over the total, nothing to evict
    std::atomic<std::uint64_t> evicted{0};           // idle connections closed to let one in
    std::atomic<std::uint64_t> timed_out{0};         // request not complete within its deadline
    std::atomic<std::uint64_t> refused_overload{0};  // 503: handler queue or body memory full
    std::atomic<std::uint64_t> accept_errors{0};     // accept(2) failed (EMFILE, ...)
    void render(std::ostream& out) const;
};

struct Metrics {
    std::atomic<std::uint64_t> events_read{0};
    std::atomic<std::uint64_t> events_unparsed{0};
    std::atomic<std::uint64_t> enobufs{0};
    std::atomic<std::uint64_t> resyncs{0};
    std::atomic<std::uint64_t> queue_overflows{0};
    std::atomic<std::uint64_t> queue_full_waits{0};
    std::atomic<std::uint64_t> flushes_in_doubt{0};
    std::atomic<std::uint64_t> samples_dropped{0};
    std::atomic<std::uint64_t> dumps{0};
    std::atomic<std::uint64_t> dumps_incomplete{0};
    std::atomic<std::uint64_t> dumps_deferred{0};
    std::atomic<std::uint64_t> dump_entries{0};
    std::atomic<std::uint64_t> samples_applied{0};
    std::atomic<std::uint64_t> flows_tracked{0};
    std::atomic<std::uint64_t> flows_lost{0};
    std::atomic<std::uint64_t> flows_lost_recovered{0};
    std::atomic<std::uint64_t> duplicate_events{0};
    std::atomic<std::uint64_t> unattributed_bytes{0};
    std::atomic<std::uint64_t> flushes{0};
    std::atomic<std::uint64_t> flush_failures{0};
    std::atomic<std::uint64_t> db_errors{0};
    std::atomic<std::uint64_t> policy_evaluations{0};
    // Other gateways' flushes heard of (NOTIFY ctquota_usage).
    std::atomic<std::uint64_t> usage_notices_received{0};
    std::atomic<std::uint64_t> enforcement_changes{0};  // state changes applied to the kernel
    std::atomic<std::uint64_t> enforcement_errors{0};
    std::atomic<std::uint64_t> kernel_repairs{0};  // rebuilds after the kernel state was lost
    // Quota slices (core/quota_lease.hpp): new leases, renewals (more bytes or
    // longer), asks refused for lack of allowance, leases found expired (a
    // gateway gone) and deleted, leases given back by an idle gateway.
    std::atomic<std::uint64_t> leases_granted{0};
    std::atomic<std::uint64_t> leases_renewed{0};
    std::atomic<std::uint64_t> leases_denied{0};
    std::atomic<std::uint64_t> leases_expired{0};
    std::atomic<std::uint64_t> leases_lapsed{0};
    // kernel quotas restarted from zero (used up before a raise, or short of the ceiling)
    std::atomic<std::uint64_t> lease_epochs{0};
    std::atomic<std::uint64_t> leases_held{0};  // gauge: subscribers with a leased kernel slice
    std::atomic<std::uint64_t> flowtables{0};   // in the ruleset: their flows bypass enforcement
    std::atomic<std::uint64_t> flowtables_uncounted{0};  // without `counter`: bytes never billed
    std::atomic<std::uint64_t> subscribers_throttled{0};
    std::atomic<std::uint64_t> subscribers_blocked{0};
    std::atomic<std::uint64_t> webhooks_delivered{0};
    std::atomic<std::uint64_t> webhook_failures{0};     // failed attempts (each is retried)
    std::atomic<std::uint64_t> subscriber_bindings{0};  // in the accounting's index
    std::atomic<std::uint64_t> event_buffer_bytes{0};
    // Drops after conntrack counted (drops/): recorded by the BPF program,
    // subtracted from billing per flow.
    std::atomic<bool> drop_attribution{false};   // the program is recording
    std::atomic<std::uint64_t> drop_packets{0};  // attributed to a flow
    std::atomic<std::uint64_t> drop_bytes{0};
    std::atomic<std::uint64_t> drop_map_full{0};   // no room in the map: billed
    std::atomic<std::uint64_t> drop_map_flows{0};  // flows with drops held now
    std::atomic<std::uint64_t> drop_read_errors{0};
    std::atomic<std::uint64_t> drop_unapplied_bytes{0};  // no flow took them: billed
    std::atomic<std::uint64_t> drop_late_bytes{0};       // dropped after the DESTROY: not billed
    std::atomic<std::uint64_t> drop_vanished_flows{0};   // evicted before they were used
    // The event journal (runtime/event_journal): events written before they
    // left the socket, write failures, events replayed at start-up, disk use.
    std::atomic<std::uint64_t> journal_records{0};
    std::atomic<std::uint64_t> journal_bytes{0};
    std::atomic<std::uint64_t> journal_errors{0};
    std::atomic<std::uint64_t> journal_replayed{0};
    std::atomic<std::uint64_t> journal_disk_bytes{0};
    std::atomic<std::uint64_t> journal_spills{0};
    // Samples counted at processing time because their own time was implausible.
    std::atomic<std::uint64_t> sample_times_implausible{0};
    std::atomic<bool> reader_running{false};
    std::atomic<bool> database_ok{false};

    // Flush latency histogram (seconds), Prometheus-style cumulative buckets.
    static constexpr std::array<double, 8> kFlushBuckets = {0.005, 0.01, 0.025, 0.05,
                                                            0.1,   0.25, 0.5,   1.0};
    std::array<std::atomic<std::uint64_t>, kFlushBuckets.size() + 1> flush_latency{};
    std::atomic<std::uint64_t> flush_latency_us_sum{0};
    // From a flush's commit to the kernel following the states it changed
    // (rounds that changed the kernel only), same buckets.
    std::array<std::atomic<std::uint64_t>, kFlushBuckets.size() + 1> kernel_latency{};
    std::atomic<std::uint64_t> kernel_latency_us_sum{0};

    HttpMetrics http;
    HttpConnectionMetrics http_connections;
    RecordMetrics records;  // flow records and their sinks (daemon/sinks/)

    void observe_flush(std::chrono::microseconds d);
    void observe_flush_to_kernel(std::chrono::microseconds d);
    [[nodiscard]] std::string render_prometheus() const;

  private:
    void render_drops(std::ostream& out) const;
};

}  // namespace ctquota::metrics
