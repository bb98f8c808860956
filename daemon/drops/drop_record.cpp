#include "drops/drop_record.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

namespace ctquota::drops {

std::optional<core::FlowKey> flow_key_of(const ctq_drop_key& k) {
    core::FlowKey key;
    if (k.family == AF_INET) {
        key.orig.src = core::IpAddress::v4_bytes(k.src);
        key.orig.dst = core::IpAddress::v4_bytes(k.dst);
    } else if (k.family == AF_INET6) {
        key.orig.src = core::IpAddress::v6_bytes(k.src);
        key.orig.dst = core::IpAddress::v6_bytes(k.dst);
    } else {
        return std::nullopt;
    }
    key.zone = k.zone;
    key.orig.l4proto = k.l4proto;
    // The tuple's 16 bits in network order: ports, ICMP id, and ICMP
    // type << 8 | code read the same way (conntrack/sample_parser.cpp).
    key.orig.src_port = ntohs(k.sport);
    key.orig.dst_port = ntohs(k.dport);
    key.start_ns = k.start_ns;
    return key;
}

ctq_drop_key kernel_key_of(const core::FlowKey& key) {
    ctq_drop_key k;
    std::memset(&k, 0, sizeof k);  // the map compares every byte
    const bool v4 = key.orig.src.family == core::Family::V4;
    k.family = static_cast<ctq_u8>(v4 ? AF_INET : AF_INET6);
    k.l4proto = key.orig.l4proto;
    k.zone = key.zone;
    k.sport = htons(key.orig.src_port);
    k.dport = htons(key.orig.dst_port);
    const std::size_t n = v4 ? 4 : 16;
    std::memcpy(k.src, key.orig.src.bytes.data(), n);
    std::memcpy(k.dst, key.orig.dst.bytes.data(), n);
    k.start_ns = key.start_ns;
    return k;
}

core::DroppedCounters dropped_of(const ctq_drop_value& v) {
    return core::DroppedCounters{core::Counters{v.bytes[0], v.packets[0]},
                                 core::Counters{v.bytes[1], v.packets[1]}};
}

}  // namespace ctquota::drops
