#pragma once
// What a flusher that cannot reach the database spills to local disk, so
// that the event journal before it can go (runtime/event_journal): the batch
// it holds (usage and checkpoint changes since the last commit, up to a
// journal position) and the ledger's tombstones at the same moment (they drop
// events applied twice after a restart from the spill).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/accounting.hpp"

namespace ctquota::core {

struct Spill {
    std::uint64_t journal_id = 0;
    std::uint64_t base_token = 0;  // the stored flush the batch follows (0: none yet)
    FlushBatch batch;              // usage rows: hours and unattributed (periods follow from hours)
    std::vector<FlowKey> tombstones;
};

std::string encode_spill(const Spill& spill);
// nullopt when the bytes are damaged or not a spill of this version.
std::optional<Spill> decode_spill(const std::string& bytes);

}  // namespace ctquota::core
