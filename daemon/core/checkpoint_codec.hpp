#pragma once
// Binary encoding of ledger checkpoints: one blob per flush instead of one row
// per flow, so checkpointing a million live flows is one bytea write.
// Version 2 rows say whether a flow was declared lost, and when; version 1
// blobs (rows of live flows only) are still read.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/flow_ledger.hpp"

namespace ctquota::core {

std::string encode_checkpoint(const CheckpointChanges& changes);
// nullopt when the blob is truncated, not ours or of an unknown version.
std::optional<CheckpointChanges> decode_checkpoint(const std::string& blob);

// Replays a snapshot and the deltas after it, oldest first.
std::vector<CheckpointEntry> replay_checkpoints(const std::vector<CheckpointChanges>& log);

}  // namespace ctquota::core
