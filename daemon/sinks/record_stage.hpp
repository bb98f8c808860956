#pragma once
// RecordStage: the aggregation stage between the ledger and the record
// sinks. It sees every sample right after the ledger applied it (on the
// accountant thread) and makes FlowRecords: a Final record at each
// connection's DESTROY, an Interim record when a connection has been open
// for `interim_interval` since its start or its previous record (dumps find
// those). Duplicates and stale samples the ledger dropped make nothing.
// Short connections leave no state here: only connections older than the
// interval (and those without a kernel start timestamp) are remembered, with
// the counters their last record reported, so each record's deltas sum to
// the connection's counters. Pure: no I/O, the clock is passed in.

#include <tsl/robin_map.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/accounting.hpp"
#include "core/clock.hpp"
#include "core/flow_record.hpp"
#include "core/subscriber_index.hpp"

namespace ctquota::sinks {

using core::FlowRecord;
using core::RecordBatch;
using core::RecordKind;

struct RecordStageStats {
    std::uint64_t final_records = 0;
    std::uint64_t interim_records = 0;
    std::uint64_t forgotten = 0;  // remembered connections that vanished without a DESTROY
};

class RecordStage {
  public:
    // Receives each batch of records made since the previous end_batch().
    using Publish = std::function<void(RecordBatch)>;

    // A remembered connection missing from more than this many complete dumps
    // in a row is forgotten (like the ledger's lost flows).
    static constexpr std::uint32_t kMissedDumpsBeforeForgotten = 30;

    RecordStage(std::chrono::nanoseconds interim_interval, const core::Clock& clock,
                Publish publish);

    // `index` attributes a record whose sample credited nothing (an idle
    // connection's interim record, a DESTROY after the last dump saw it all).
    void observe(const core::FlowSample& sample, const core::Applied& applied,
                 const core::SubscriberIndex& index);
    // Publishes the records made since the last call, if any.
    void end_batch();
    void dump_end(bool complete);

    [[nodiscard]] const RecordStageStats& stats() const { return stats_; }
    [[nodiscard]] std::size_t remembered() const { return progress_.size(); }

  private:
    struct Progress {
        core::Counters orig;  // what the connection's last record reported
        core::Counters reply;
        std::int64_t reported_ns = 0;  // 0: no record yet
        std::int64_t first_seen_ns = 0;
        std::uint64_t last_dump = 0;  // the number of the last dump that saw it (1 = first)
    };

    std::int64_t now_ns();
    void observe_poll(const core::FlowSample& s, const core::Applied& applied,
                      const core::SubscriberIndex& index);
    void observe_destroy(const core::FlowSample& s, const core::Applied& applied,
                         const core::SubscriberIndex& index);
    FlowRecord& emit(RecordKind kind, const core::FlowSample& s, const core::Applied& applied,
                     const core::SubscriberIndex& index, const Progress* remembered);

    std::int64_t interval_ns_;
    const core::Clock& clock_;
    Publish publish_;
    std::vector<FlowRecord> pending_;
    std::int64_t batch_now_ = 0;  // read once per batch
    std::uint64_t dumps_ = 0;     // complete dumps so far
    tsl::robin_map<core::FlowKey, Progress, core::FlowKeyHash> progress_;
    RecordStageStats stats_;
};

}  // namespace ctquota::sinks
