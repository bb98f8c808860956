#pragma once
// IpfixExporter: the [ipfix] sink. Encodes records (ipfix::Session, pure)
// and sends the messages to every collector: UDP (one connected socket per
// collector; templates re-sent on a timer and every N messages) or TCP (one
// connection per collector, templates once per connection, reconnected with
// backoff). A collector that is down or refuses is counted and logged once a
// minute, and its records are lost (its sequence numbers show the gap);
// write() never throws for a collector, so one dead collector neither holds
// the others back nor makes them see records twice.

#include <chrono>
#include <memory>
#include <vector>

#include "core/clock.hpp"
#include "metrics/record_metrics.hpp"
#include "sinks/ipfix_message.hpp"
#include "sinks/record_sink.hpp"
#include "sinks/sinks_config.hpp"

namespace ctquota::sinks {

class IpfixExporter final : public RecordSink {
  public:
    // Throws std::invalid_argument for a collector address that is no IP address.
    IpfixExporter(const IpfixConfig& config, const core::Clock& clock,
                  metrics::RecordMetrics& metrics);
    ~IpfixExporter() override;
    IpfixExporter(const IpfixExporter&) = delete;
    IpfixExporter& operator=(const IpfixExporter&) = delete;

    void write(const std::vector<RecordBatch>& batches) override;
    // Templates due on a quiet UDP session go out on their own.
    void tick() override;

    struct Target;

  private:
    void send(Target& t, std::span<const FlowRecord* const> records);
    bool connected(Target& t);
    void failed(Target& t, const char* what, int error);

    const core::Clock& clock_;
    metrics::RecordMetrics& metrics_;
    std::vector<std::unique_ptr<Target>> targets_;
};

}  // namespace ctquota::sinks
