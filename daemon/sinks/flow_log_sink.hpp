#pragma once
// FlowLogSink: the [flowlog] sink. Filters the records (only translated
// connections, only some subscribers), writes each batch in one COPY
// transaction (store::FlowLogStore), keeps tomorrow's partition ready and
// drops partitions past the retention. A failing database makes write()
// throw: the channel keeps the batch and retries; meanwhile its queue takes
// the new records until it is full.

#include <chrono>
#include <optional>
#include <unordered_set>

#include "core/clock.hpp"
#include "metrics/record_metrics.hpp"
#include "sinks/record_sink.hpp"
#include "sinks/sinks_config.hpp"
#include "store/database.hpp"
#include "store/flow_log_store.hpp"

namespace ctquota::sinks {

class FlowLogSink final : public RecordSink {
  public:
    FlowLogSink(const FlowLogConfig& config, const std::string& database_url,
                const std::string& gateway_id, const core::Clock& clock,
                metrics::RecordMetrics& metrics);

    void write(const std::vector<RecordBatch>& batches) override;
    void tick() override;

  private:
    bool wanted(const FlowRecord& r) const;
    void refresh_filter();
    void retention();

    const FlowLogConfig& config_;
    const core::Clock& clock_;
    metrics::RecordMetrics& metrics_;
    store::Database db_;
    store::FlowLogStore store_;
    // Internal ids of config_.subscribers, refreshed now and then (a
    // subscriber added later is logged from the next refresh on).
    std::optional<std::unordered_set<core::SubscriberId>> subscribers_;
    std::chrono::steady_clock::time_point next_filter_refresh_{};
    std::chrono::steady_clock::time_point next_retention_{};
};

}  // namespace ctquota::sinks
