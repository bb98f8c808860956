#pragma once
// A version 1 checkpoint blob written byte by byte, as daemons before version
// 2 stored them (rows of live flows only, no lost flag), for the tests that
// check such blobs, still kept in databases, are read.

#include <cstdint>
#include <string>
#include <vector>

#include "core/flow_ledger.hpp"

namespace ctquota::test {

namespace v1 {

template <typename T>
void put_le(std::string& out, T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) {
        out.push_back(static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff));
    }
}

inline void put_key(std::string& out, const core::FlowKey& k) {
    put_le(out, k.id);
    put_le(out, k.zone);
    put_le(out, k.orig.l4proto);
    put_le(out, static_cast<std::uint8_t>(k.orig.src.family));
    out.append(reinterpret_cast<const char*>(k.orig.src.bytes.data()), 16);
    out.append(reinterpret_cast<const char*>(k.orig.dst.bytes.data()), 16);
    put_le(out, k.orig.src_port);
    put_le(out, k.orig.dst_port);
    put_le(out, k.start_ns);
}

}  // namespace v1

// Header "CTQL", version 1, snapshot flag, 2 spare bytes, the counts; then
// each upsert (key + orig bytes/packets + reply bytes/packets), each removal (key).
inline std::string checkpoint_v1_blob(bool snapshot,
                                      const std::vector<core::CheckpointEntry>& upserts,
                                      const std::vector<core::FlowKey>& removals = {}) {
    std::string out = "CTQL";
    v1::put_le(out, std::uint8_t{1});
    v1::put_le(out, static_cast<std::uint8_t>(snapshot ? 1 : 0));
    v1::put_le(out, std::uint16_t{0});
    v1::put_le(out, static_cast<std::uint32_t>(upserts.size()));
    v1::put_le(out, static_cast<std::uint32_t>(removals.size()));
    for (const auto& e : upserts) {
        v1::put_key(out, e.key);
        v1::put_le(out, e.orig.bytes);
        v1::put_le(out, e.orig.packets);
        v1::put_le(out, e.reply.bytes);
        v1::put_le(out, e.reply.packets);
    }
    for (const auto& k : removals) {
        v1::put_key(out, k);
    }
    return out;
}

}  // namespace ctquota::test
