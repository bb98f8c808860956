#pragma once
// FlowRecords: the record sinks the configuration asks for ([flowlog],
// [ipfix]), each behind its own SinkChannel, fed by one RecordStage that the
// accountant calls (runtime::Accountant::set_record_stage). Nothing of it
// exists when no sink is configured: the totals path then costs what it did.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "metrics/metrics.hpp"
#include "sinks/record_stage.hpp"
#include "sinks/sink_channel.hpp"
#include "sinks/sinks_config.hpp"

namespace ctquota::sinks {

struct SinksConfig {
    RecordsConfig records;
    FlowLogConfig flowlog;
    IpfixConfig ipfix;
    std::string database_url;
    std::string gateway_id;

    [[nodiscard]] bool any() const { return flowlog.enabled || !ipfix.collectors.empty(); }
};

class FlowRecords {
  public:
    // `config` must outlive this object.
    FlowRecords(const SinksConfig& config, metrics::Metrics& metrics);
    ~FlowRecords();

    RecordStage& stage() { return stage_; }
    void start();
    // Each sink writes what it holds for up to `grace`, then stops.
    void stop(std::chrono::nanoseconds grace);

  private:
    void publish(const RecordBatch& batch);

    core::SystemClock clock_;  // records carry the kernel's time: no operator offset
    metrics::Metrics& metrics_;
    std::vector<std::unique_ptr<SinkChannel>> channels_;
    RecordStage stage_;
};

}  // namespace ctquota::sinks
