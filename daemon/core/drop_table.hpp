#pragma once
// DropTable: what the kernel says it dropped of each connection after
// conntrack had counted it (drops/ reads it from the BPF map), mirrored for
// the accounting thread. Billing subtracts it per flow (FlowLedger), so that
// bytes billed are bytes delivered.
//
// The kernel's numbers are cumulative per flow; a refresh replaces them. A
// flow whose DESTROY used them is erased (here and, through
// take_erasures(), in the kernel). An entry no sample asked for during two
// complete dumps belongs to no live flow (its DESTROY came before the drop,
// or was lost): it is erased too and its bytes counted as unapplied.

#include <tsl/robin_map.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "core/flow.hpp"

namespace ctquota::core {

// Cumulative per flow and direction, as counted by the kernel.
struct DroppedCounters {
    Counters orig;
    Counters reply;
    bool operator==(const DroppedCounters&) const = default;
};

// One flow's drops as read from the kernel; key.id is always 0.
struct DropRecord {
    FlowKey key;
    DroppedCounters dropped;
};

struct DropTableStats {
    std::uint64_t unapplied_flows = 0;  // erased without a sample of their flow using them
    std::uint64_t unapplied_bytes = 0;
    std::uint64_t vanished_flows = 0;  // gone from the kernel's map without us erasing them
};

class DropTable {
  public:
    // The drop key of a sample: the conntrack id is not part of it.
    static FlowKey key_of(const FlowSample& s) { return FlowKey{0, s.zone, s.orig, s.start_ns}; }

    // The kernel's whole map, read now. Entries missing from it vanished
    // (evicted by the LRU map, or erased by someone else).
    void refresh(const std::vector<DropRecord>& kernel);
    // The flow's drops so far, or nothing. Marks the entries as in use. A
    // flow's drops may sit under two keys: its own, and its tuple with start
    // 0 (drops the kernel could only match by the packet's tuple: the shaper).
    std::optional<DroppedCounters> find(const FlowSample& s);
    // The flow ended and its final credit used its drops: erase the entry.
    void finish(const FlowSample& s);
    // Keys to erase from the kernel's map, once.
    std::vector<FlowKey> take_erasures();

    void dump_begin(std::uint64_t seq) { dump_ = seq; }
    void dump_end(std::uint64_t seq, bool complete);

    [[nodiscard]] bool empty() const { return entries_.empty(); }
    [[nodiscard]] std::size_t size() const { return entries_.size(); }
    [[nodiscard]] const DropTableStats& stats() const { return stats_; }

  private:
    struct Entry {
        DroppedCounters dropped;
        std::uint64_t born_dump = 0;  // the dump running when it appeared
        std::uint32_t missed_dumps = 0;
        bool used = false;  // asked for since the last complete dump
    };
    void erase(const FlowKey& key);
    // The flow's own key, and its tuple-only key when that is another one.
    static std::vector<FlowKey> keys_of(const FlowSample& s);

    tsl::robin_map<FlowKey, Entry, FlowKeyHash> entries_;
    std::vector<FlowKey> erasures_;
    std::uint64_t dump_ = 0;
    DropTableStats stats_;
};

}  // namespace ctquota::core
