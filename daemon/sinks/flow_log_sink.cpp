#include "sinks/flow_log_sink.hpp"

#include <spdlog/spdlog.h>

namespace ctquota::sinks {
namespace {

constexpr auto kFilterRefresh = std::chrono::minutes(1);
constexpr auto kRetentionEvery = std::chrono::hours(1);
// Statements of the flow log fail instead of hanging on a stuck database
// (and holding up a shutdown): a write is one COPY of about batch_records
// rows (20k: under a second), retried after a failure.
constexpr auto kStatementTimeout = std::chrono::milliseconds(10000);

}  // namespace

FlowLogSink::FlowLogSink(const FlowLogConfig& config, const std::string& database_url,
                         const std::string& gateway_id, const core::Clock& clock,
                         metrics::RecordMetrics& metrics)
    : config_(config),
      clock_(clock),
      metrics_(metrics),
      db_(database_url, kStatementTimeout),
      store_(db_, gateway_id, kStatementTimeout) {}

bool FlowLogSink::wanted(const FlowRecord& r) const {
    if (config_.only_translated && !core::translated(r)) {
        return false;
    }
    return !subscribers_ || subscribers_->contains(r.subscriber);
}

void FlowLogSink::refresh_filter() {
    if (config_.subscribers.empty()) {
        return;
    }
    const auto ids = store_.subscriber_ids(config_.subscribers);
    if (!subscribers_ || subscribers_->size() != ids.size()) {
        spdlog::info("flow log: {} of the {} subscribers in [flowlog] subscribers exist",
                     ids.size(), config_.subscribers.size());
    }
    subscribers_.emplace(ids.begin(), ids.end());
    next_filter_refresh_ = std::chrono::steady_clock::now() + kFilterRefresh;
}

void FlowLogSink::write(const std::vector<RecordBatch>& batches) {
    if (!config_.subscribers.empty() && !subscribers_) {
        refresh_filter();  // nothing is written before the filter is known
    }
    std::vector<const FlowRecord*> records;
    for (const auto& batch : batches) {
        for (const auto& r : *batch) {
            if (wanted(r)) {
                records.push_back(&r);
            }
        }
    }
    store_.write(records);
}

void FlowLogSink::retention() {
    const auto keep_from = clock_.now() - config_.retention;
    const auto dropped = store_.drop_partitions_before(keep_from);
    for (const auto& name : dropped) {
        spdlog::info("flow log: dropped partition {} (retention)", name);
    }
    metrics_.flowlog_partitions_dropped += dropped.size();
    next_retention_ = std::chrono::steady_clock::now() + kRetentionEvery;
}

void FlowLogSink::tick() {
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_retention_) {
        retention();
    }
    // Tomorrow's partition before midnight: no DDL in the way of the first records of a day.
    store_.ensure_partition(clock_.now() + std::chrono::hours(24));
    if (!config_.subscribers.empty() && now >= next_filter_refresh_) {
        refresh_filter();
    }
}

}  // namespace ctquota::sinks
