#pragma once
// FlowSample: what the conntrack adapter hands to the core, one per kernel
// conntrack entry seen in a dump or a DESTROY event. Plain values only.

#include <cstdint>
#include <functional>

#include "core/address.hpp"

namespace ctquota::core {

struct FlowTuple {
    IpAddress src;
    IpAddress dst;
    std::uint16_t src_port = 0;  // host order; ICMP: id / type-code, else 0
    std::uint16_t dst_port = 0;
    std::uint8_t l4proto = 0;
    bool operator==(const FlowTuple&) const = default;
};

struct Counters {
    std::uint64_t bytes = 0;
    std::uint64_t packets = 0;
    bool operator==(const Counters&) const = default;
    Counters& operator+=(const Counters& o) {
        bytes += o.bytes;
        packets += o.packets;
        return *this;
    }
};

enum class SampleKind : std::uint8_t { Poll, Destroy };

struct FlowSample {
    SampleKind kind = SampleKind::Poll;
    std::uint32_t id = 0;
    std::uint16_t zone = 0;
    std::uint32_t mark = 0;
    FlowTuple orig;
    FlowTuple reply;
    Counters orig_counters;
    Counters reply_counters;
    std::uint64_t start_ns = 0;  // conntrack timestamp extension; 0 when disabled
    std::uint64_t stop_ns = 0;
    // On the daemon's clock (ns since the epoch): when these counters were
    // final (DESTROY: its stop time) or read (a dump). Set by the reader;
    // 0 = unknown, the time it is applied stands in.
    std::int64_t as_of_ns = 0;
};

// Identity of one connection: ids are hashes and can be reused, so the
// original tuple and the start timestamp are part of the key.
struct FlowKey {
    std::uint32_t id = 0;
    std::uint16_t zone = 0;
    FlowTuple orig;
    std::uint64_t start_ns = 0;
    bool operator==(const FlowKey&) const = default;

    static FlowKey of(const FlowSample& s) { return FlowKey{s.id, s.zone, s.orig, s.start_ns}; }
};

struct FlowKeyHash {
    std::size_t operator()(const FlowKey& k) const noexcept;
};

}  // namespace ctquota::core
