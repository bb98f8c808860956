#include "core/flow.hpp"

#include <cstring>

namespace ctquota::core {
namespace {

// 64-bit mix (splitmix64 finaliser): cheap and good enough for hash tables.
inline std::uint64_t mix(std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

inline std::uint64_t load64(const std::uint8_t* p) {
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

}  // namespace

std::size_t FlowKeyHash::operator()(const FlowKey& k) const noexcept {
    std::uint64_t h = mix(k.id ^ (static_cast<std::uint64_t>(k.zone) << 32) ^
                          (static_cast<std::uint64_t>(k.orig.l4proto) << 48));
    h = mix(h ^ load64(k.orig.src.bytes.data()) ^ (load64(k.orig.src.bytes.data() + 8) << 1));
    h = mix(h ^ load64(k.orig.dst.bytes.data()) ^ (load64(k.orig.dst.bytes.data() + 8) << 1));
    h = mix(h ^ (static_cast<std::uint64_t>(k.orig.src_port) << 16) ^ k.orig.dst_port ^
            (k.start_ns << 1));
    return static_cast<std::size_t>(h);
}

}  // namespace ctquota::core
