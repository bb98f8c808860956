#pragma once
// RecordSink: the one small interface every flow-record sink implements (the
// PostgreSQL flow log, the IPFIX exporter). A sink is driven by its own
// SinkChannel thread, never by the accountant: it may block, fail or be slow,
// and only its own queue notices.

#include <chrono>
#include <vector>

#include "core/flow_record.hpp"

namespace ctquota::sinks {

using core::FlowRecord;
using core::RecordBatch;
using core::RecordKind;

class RecordSink {
  public:
    virtual ~RecordSink() = default;

    // Writes the records of `batches`, all or nothing. Throws (any
    // std::exception, its message fit for a log line) when it could not: the
    // channel counts it, keeps the batches and calls again after a pause.
    virtual void write(const std::vector<RecordBatch>& batches) = 0;
    // Called at least every `tick_interval` with or without records: timers
    // (template refresh, retention). Throws like write(); counted and logged.
    virtual void tick() {}
};

}  // namespace ctquota::sinks
