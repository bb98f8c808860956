#include "sinks/flow_records.hpp"

#include <spdlog/spdlog.h>

#include "sinks/flow_log_sink.hpp"
#include "sinks/ipfix_exporter.hpp"

namespace ctquota::sinks {
namespace {

std::chrono::milliseconds ms(std::chrono::nanoseconds d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}

}  // namespace

FlowRecords::FlowRecords(const SinksConfig& config, metrics::Metrics& metrics)
    : metrics_(metrics), stage_(config.records.interim_interval, clock_, [this](RecordBatch batch) {
          publish(batch);
      }) {
    auto& m = metrics.records;
    if (config.flowlog.enabled) {
        ChannelOptions o;
        o.capacity = config.flowlog.queue_records;
        o.batch_records = config.flowlog.batch_records;
        o.linger = ms(config.flowlog.flush_interval);
        channels_.push_back(std::make_unique<SinkChannel>(
            std::make_unique<FlowLogSink>(config.flowlog, config.database_url, config.gateway_id,
                                          clock_, m),
            o, m.flowlog));
    }
    if (!config.ipfix.collectors.empty()) {
        ChannelOptions o;
        o.capacity = config.ipfix.queue_records;
        o.batch_records = 2000;
        o.linger = std::chrono::milliseconds(100);
        channels_.push_back(std::make_unique<SinkChannel>(
            std::make_unique<IpfixExporter>(config.ipfix, clock_, m), o, m.ipfix));
    }
    spdlog::info(
        "flow records: {} sink(s); interim records every {} s", channels_.size(),
        std::chrono::duration_cast<std::chrono::seconds>(config.records.interim_interval).count());
}

FlowRecords::~FlowRecords() {
    stop(std::chrono::seconds(0));
}

void FlowRecords::start() {
    for (auto& c : channels_) {
        c->start();
    }
}

void FlowRecords::stop(std::chrono::nanoseconds grace) {
    for (auto& c : channels_) {
        c->stop(grace);
    }
}

// On the accountant thread, once per applied batch of samples.
void FlowRecords::publish(const RecordBatch& batch) {
    for (auto& c : channels_) {
        c->push(batch);
    }
    const auto& s = stage_.stats();
    metrics_.records.final_records = s.final_records;
    metrics_.records.interim_records = s.interim_records;
    metrics_.records.remembered = stage_.remembered();
}

}  // namespace ctquota::sinks
