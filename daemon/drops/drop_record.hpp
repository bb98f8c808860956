#pragma once
// The BPF map's key and value (drop_abi.h) <-> core's flow key and dropped
// counters. Pure, so the byte order and the address layout are unit-tested.

#include <optional>

#include "core/drop_table.hpp"
#include "drops/drop_abi.h"

namespace ctquota::drops {

// nullopt for a family other than IPv4/IPv6 (the program records none).
std::optional<core::FlowKey> flow_key_of(const ctq_drop_key& k);
ctq_drop_key kernel_key_of(const core::FlowKey& key);
core::DroppedCounters dropped_of(const ctq_drop_value& v);

}  // namespace ctquota::drops
