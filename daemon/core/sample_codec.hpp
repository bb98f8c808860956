#pragma once
// Binary encoding of one FlowSample, for the event journal
// (runtime/event_journal): what a record holds, so that a sample replayed
// after a crash is the sample that was read. Little-endian, versioned,
// addresses 4 or 16 bytes by family: about 100 bytes for IPv4, 150 for IPv6.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "core/flow.hpp"

namespace ctquota::core {

inline constexpr std::size_t kMaxEncodedSample = 16 + 2 * (16 + 16 + 4) + 7 * 8;

// Writes at most kMaxEncodedSample bytes to `out`; returns how many.
std::size_t encode_sample(const FlowSample& s, std::uint8_t* out);
// nullopt when the bytes are not one sample of this version.
std::optional<FlowSample> decode_sample(std::span<const std::uint8_t> in);

}  // namespace ctquota::core
