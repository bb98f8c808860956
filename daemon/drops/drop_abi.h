/* What the BPF program (ctquota_drops.bpf.c) and the daemon (drop_map.cpp)
 * share: the maps' key, value and config layouts. C, fixed-size fields, no
 * padding, so both compilers lay them out alike. Changing a layout changes
 * the object's hash: a restart then loads a fresh program and maps. */
#ifndef CTQUOTA_DROP_ABI_H
#define CTQUOTA_DROP_ABI_H

#ifdef __cplusplus
#include <cstdint>
typedef std::uint8_t ctq_u8;
typedef std::uint16_t ctq_u16;
typedef std::uint32_t ctq_u32;
typedef std::uint64_t ctq_u64;
#else
typedef __u8 ctq_u8;
typedef __u16 ctq_u16;
typedef __u32 ctq_u32;
typedef __u64 ctq_u64;
#endif

/* One conntrack entry: the key ctnetlink gives us too (zone, original tuple,
 * start timestamp), without the id, which is a keyed hash of the kernel's. */
struct ctq_drop_key {
    ctq_u8 family;   /* AF_INET or AF_INET6 */
    ctq_u8 l4proto;  /* original tuple's protocol */
    ctq_u16 zone;    /* conntrack zone id (0 for directional zones, as CTA_ZONE) */
    ctq_u16 sport;   /* network order: port, ICMP id, GRE key... as in the tuple */
    ctq_u16 dport;   /* network order: port, ICMP type << 8 | code */
    ctq_u8 src[16];  /* IPv4 in the first 4 bytes, the rest zero */
    ctq_u8 dst[16];
    ctq_u64 start_ns; /* conntrack timestamp extension; 0 without it */
};

/* Dropped after conntrack counted them: [0] original direction, [1] reply. */
struct ctq_drop_value {
    ctq_u64 bytes[2];
    ctq_u64 packets[2];
};

/* The single entry of the config map: written by the daemon, read by the
 * program (netns) and by the next daemon deciding whether to reuse pins. */
struct ctq_drop_config {
    ctq_u32 netns_inum; /* only drops of this network namespace's conntrack */
    ctq_u32 reserved;
    ctq_u64 object_hash; /* which program recorded into these maps */
};

/* Per-CPU counters of the program. */
enum ctq_drop_stat {
    CTQ_STAT_PACKETS = 0, /* drops attributed to a flow */
    CTQ_STAT_BYTES = 1,
    CTQ_STAT_MAP_FULL = 2, /* no room in the map: the drop is billed */
    CTQ_STAT_COUNT = 3,
};

#endif
