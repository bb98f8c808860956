#pragma once
// Counters of the flow records (daemon/sinks/): records made, and per sink
// (the PostgreSQL flow log, the IPFIX exporter) records written and dropped,
// queue depth and the last error. Rendered by Metrics::render_prometheus,
// only for the sinks that are enabled.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <string>

namespace ctquota::metrics {

class SinkMetrics {
  public:
    explicit SinkMetrics(const char* name) : name_(name) {}

    std::atomic<bool> enabled{false};
    std::atomic<std::uint64_t> written{0};  // records the sink took (COPY committed, datagram sent)
    std::atomic<std::uint64_t> dropped{0};  // records given up: queue full, or unwritable at exit
    std::atomic<std::uint64_t> queued{0};   // records waiting in the sink's queue
    std::atomic<std::uint64_t> errors{0};   // failed writes (each retried or counted as dropped)

    [[nodiscard]] const char* name() const { return name_; }
    void set_last_error(std::string message, std::int64_t unix_seconds);
    void render(std::ostream& out) const;

  private:
    const char* name_;
    mutable std::mutex mu_;
    std::string last_error_;
    std::int64_t last_error_at_ = 0;
};

struct RecordMetrics {
    std::atomic<std::uint64_t> final_records{0};    // connections ended (DESTROY)
    std::atomic<std::uint64_t> interim_records{0};  // progress reports of open connections
    std::atomic<std::uint64_t> remembered{0};       // long connections the stage tracks
    SinkMetrics flowlog{"flowlog"};
    SinkMetrics ipfix{"ipfix"};
    std::atomic<std::uint64_t> ipfix_messages{0};       // IPFIX messages sent, all collectors
    std::atomic<std::uint64_t> ipfix_template_sets{0};  // messages that carried the templates
    std::atomic<std::uint64_t> ipfix_send_errors{0};    // datagrams/segments the kernel refused
    std::atomic<std::uint64_t> flowlog_partitions_dropped{0};  // retention

    void render(std::ostream& out) const;
};

}  // namespace ctquota::metrics
