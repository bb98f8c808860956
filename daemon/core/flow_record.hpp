#pragma once
// FlowRecord: one connection as the record sinks see it (daemon/sinks/: the
// PostgreSQL flow log, the IPFIX exporter): both tuples, so the address and
// port after NAT are there, the counters both ways, start and end, and whose
// it was. Made by sinks::RecordStage from what the ledger did with each
// sample. Plain values.

#include <cstdint>
#include <memory>
#include <vector>

#include "core/accounting.hpp"
#include "core/flow.hpp"

namespace ctquota::core {

enum class RecordKind : std::uint8_t {
    Interim,  // the connection is still open: a progress report
    Final,    // its DESTROY: the last record of the connection
};

struct FlowRecord {
    RecordKind kind = RecordKind::Final;
    // The kernel had no start timestamp (the connection predates
    // nf_conntrack_timestamp): start_ns is when the daemon first saw it.
    bool start_is_first_seen = false;
    Direction direction = Direction::None;
    std::uint16_t zone = 0;
    std::uint32_t conntrack_id = 0;
    SubscriberId subscriber = kUnattributed;
    FlowTuple orig;       // as the initiator sent it (pre-NAT)
    FlowTuple reply;      // as the other end answers (post-NAT, reversed)
    Counters orig_total;  // the connection's counters at this record
    Counters reply_total;
    Counters orig_delta;  // since the connection's previous record
    Counters reply_delta;
    std::int64_t start_ns = 0;  // Unix time: the kernel's start timestamp (or first seen)
    std::int64_t end_ns = 0;    // the kernel's stop timestamp (Final) or when it was seen (Interim)
    std::uint64_t flow_id = 0;  // the same for every record of one connection
};

// Records are handed to every sink as one shared, immutable batch.
using RecordBatch = std::shared_ptr<const std::vector<FlowRecord>>;

// Whether NAT changed the connection: the reply tuple is not the original reversed.
inline bool translated(const FlowRecord& r) {
    return r.orig.src != r.reply.dst || r.orig.dst != r.reply.src ||
           r.orig.src_port != r.reply.dst_port || r.orig.dst_port != r.reply.src_port;
}

struct Endpoint {
    IpAddress address;
    std::uint16_t port = 0;
};

// The subscriber's end of the connection as the far side saw it: for a
// connection the subscriber opened, its source after NAT (the reply's
// destination); for one opened toward the subscriber, the destination the
// initiator used (before DNAT). What an abuse report names (RFC 6302).
inline Endpoint public_endpoint(const FlowRecord& r) {
    if (r.direction == Direction::OrigIsDownload) {
        return {r.orig.dst, r.orig.dst_port};
    }
    return {r.reply.dst, r.reply.dst_port};
}

}  // namespace ctquota::core
