// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/* Bytes the gateway dropped after conntrack counted them, per conntrack entry.
 *
 * Conntrack counts a forwarded packet in PREROUTING. When the same packet is
 * then dropped — an nftables drop (ctquotad's block chain, kernel quota,
 * upload policer, or anybody's rule after conntrack) or a qdisc (the HTB/tbf
 * queue of a throttled subscriber, a full device queue) — the kernel frees it
 * with kfree_skb and a drop reason; consume_skb is the normal free. This
 * program runs on that tracepoint and adds the packet's IP length and one
 * packet to the entry's direction in an LRU hash, keyed as ctnetlink shows
 * the entry (zone, original tuple, start timestamp). ctquotad subtracts it.
 *
 * Counted only: confirmed entries (an unconfirmed one dies without a DESTROY
 * and is never billed) of the daemon's own network namespace, packets that
 * conntrack counted (not ICMP errors attached as RELATED), and the drop
 * reasons of the forwarding path (netfilter, qdisc, tc; unspecified or purged
 * only for forwarded packets on their way out): a packet socket's clone
 * dropped for a full tap buffer is not a delivery that failed.
 *
 * CO-RE: only the fields read are declared, with preserve_access_index; the
 * offsets and enum values come from the running kernel's BTF at load. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "drop_abi.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58
#define IPS_CONFIRMED (1UL << 3)
#define NFCT_INFOMASK 7UL
#define NF_CT_DEFAULT_ZONE_DIR 3

enum ip_conntrack_info {
    IP_CT_ESTABLISHED = 0,
    IP_CT_RELATED = 1,
    IP_CT_NEW = 2,
    IP_CT_IS_REPLY = 3,
    IP_CT_RELATED_REPLY = 4,
};

enum skb_drop_reason {
    SKB_DROP_REASON_NOT_SPECIFIED = 2,
    SKB_DROP_REASON_NETFILTER_DROP = 12,
    SKB_DROP_REASON_TC_EGRESS = 62,
    SKB_DROP_REASON_QDISC_DROP = 64,
    SKB_DROP_REASON_QDISC_OVERLIMIT = 65,
    SKB_DROP_REASON_QDISC_CONGESTED = 66,
    SKB_DROP_REASON_CAKE_FLOOD = 67,
    SKB_DROP_REASON_FQ_BAND_LIMIT = 68,
    SKB_DROP_REASON_FQ_HORIZON_LIMIT = 69,
    SKB_DROP_REASON_FQ_FLOW_LIMIT = 70,
    SKB_DROP_REASON_TC_INGRESS = 73,
    SKB_DROP_REASON_QUEUE_PURGE = 105,
};

enum nf_ct_ext_id {
    NF_CT_EXT_TSTAMP = 5,
};

struct ns_common {
    unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
    struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
    struct net *net;
} possible_net_t;

struct net_device {
    int ifindex;
    possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sk_buff {
    struct net_device *dev;
    int skb_iif;
    __u8 redirected : 1;
    unsigned int len;
    unsigned long _nfct;
    __u16 network_header;
    unsigned char *head;
    unsigned char *data;
} __attribute__((preserve_access_index));

union nf_inet_addr {
    __u32 all[4];
} __attribute__((preserve_access_index));

union nf_conntrack_man_proto {
    __be16 all;
} __attribute__((preserve_access_index));

struct nf_conntrack_man {
    union nf_inet_addr u3;
    union nf_conntrack_man_proto u;
    __u16 l3num;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple {
    struct nf_conntrack_man src;
    struct {
        union nf_inet_addr u3;
        union {
            __be16 all;
        } u;
        __u8 protonum;
    } dst;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple_hash {
    struct nf_conntrack_tuple tuple;
} __attribute__((preserve_access_index));

struct nf_conntrack_zone {
    __u16 id;
    __u8 flags;
    __u8 dir;
} __attribute__((preserve_access_index));

struct nf_ct_ext {
    __u8 offset[9];
} __attribute__((preserve_access_index));

struct nf_conn_tstamp {
    __u64 start;
} __attribute__((preserve_access_index));

struct nf_conn {
    struct nf_conntrack_zone zone;
    struct nf_conntrack_tuple_hash tuplehash[2];
    unsigned long status;
    possible_net_t ct_net;
    struct nf_ct_ext *ext;
} __attribute__((preserve_access_index));

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536); /* the daemon sets [drops] max_flows before load */
    __type(key, struct ctq_drop_key);
    __type(value, struct ctq_drop_value);
} ctq_drops SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct ctq_drop_config);
} ctq_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, CTQ_STAT_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} ctq_stats SEC(".maps");

static __always_inline void stat_add(__u32 which, __u64 n) {
    __u64 *v = bpf_map_lookup_elem(&ctq_stats, &which);
    if (v)
        *v += n; /* per CPU: no other writer */
}

#define REASON_IS(r, name) \
    (bpf_core_enum_value_exists(enum skb_drop_reason, name) && \
     (r) == bpf_core_enum_value(enum skb_drop_reason, name))

/* A forwarded packet on its way out: its device is no longer the one it came in on. */
static __always_inline int leaving(struct sk_buff *skb) {
    int iif = BPF_CORE_READ(skb, skb_iif);
    return iif != 0 && BPF_CORE_READ(skb, dev, ifindex) != iif;
}

static __always_inline int forwarding_drop(struct sk_buff *skb, __u32 r) {
    /* Some queues free what they cannot take without a reason (tbf did on
     * this kernel), and a qdisc torn down purges its queue: taken only for
     * forwarded packets at their way out, never for local deliveries. */
    if (REASON_IS(r, SKB_DROP_REASON_NOT_SPECIFIED) || REASON_IS(r, SKB_DROP_REASON_QUEUE_PURGE))
        return leaving(skb);
    return REASON_IS(r, SKB_DROP_REASON_NETFILTER_DROP) ||
           REASON_IS(r, SKB_DROP_REASON_QDISC_DROP) ||
           REASON_IS(r, SKB_DROP_REASON_QDISC_OVERLIMIT) ||
           REASON_IS(r, SKB_DROP_REASON_QDISC_CONGESTED) ||
           REASON_IS(r, SKB_DROP_REASON_CAKE_FLOOD) ||
           REASON_IS(r, SKB_DROP_REASON_FQ_BAND_LIMIT) ||
           REASON_IS(r, SKB_DROP_REASON_FQ_HORIZON_LIMIT) ||
           REASON_IS(r, SKB_DROP_REASON_FQ_FLOW_LIMIT) ||
           REASON_IS(r, SKB_DROP_REASON_TC_EGRESS) || REASON_IS(r, SKB_DROP_REASON_TC_INGRESS);
}

/* The IP length of the packet (what conntrack added for it in PREROUTING)
 * and its protocol; 0 when the network header is not the ct's family. */
static __always_inline __u32 ip_length(struct sk_buff *skb, __u16 l3num, __u8 *proto) {
    unsigned char *head = BPF_CORE_READ(skb, head);
    __u16 nh = BPF_CORE_READ(skb, network_header);
    unsigned char hdr[8];
    if (bpf_probe_read_kernel(hdr, sizeof(hdr), head + nh))
        return 0;
    __u32 len;
    if (l3num == AF_INET && (hdr[0] >> 4) == 4) {
        len = ((__u32)hdr[2] << 8) | hdr[3];
        if (bpf_probe_read_kernel(proto, 1, head + nh + 9))
            return 0;
    } else if (l3num == AF_INET6 && (hdr[0] >> 4) == 6) {
        len = ((__u32)hdr[4] << 8) | hdr[5];
        len = len == 0 ? 0 : len + 40;
        *proto = hdr[6];
    } else {
        return 0;
    }
    if (len == 0) {
        /* A GSO packet past 64 KiB (BIG TCP) carries no length: take the skb's. */
        unsigned char *data = BPF_CORE_READ(skb, data);
        len = BPF_CORE_READ(skb, len) + (__u32)(data - head) - nh;
    }
    return len;
}

static __always_inline __u64 start_of(struct nf_conn *ct) {
    struct nf_ct_ext *ext = BPF_CORE_READ(ct, ext);
    if (!ext)
        return 0;
    __u32 id = bpf_core_enum_value(enum nf_ct_ext_id, NF_CT_EXT_TSTAMP);
    __u8 off = 0;
    if (id >= 9 || bpf_probe_read_kernel(&off, 1, (__u8 *)ext + id) || off == 0)
        return 0;
    __u64 start = 0;
    bpf_probe_read_kernel(&start, sizeof(start), (char *)ext + off);
    return start;
}

static __always_inline void fill_key(struct ctq_drop_key *k, struct nf_conn *ct, __u16 l3num) {
    struct nf_conntrack_tuple *t = &ct->tuplehash[0].tuple;
    k->family = (__u8)l3num;
    k->l4proto = BPF_CORE_READ(t, dst.protonum);
    if (bpf_core_field_exists(ct->zone) && BPF_CORE_READ(ct, zone.dir) == NF_CT_DEFAULT_ZONE_DIR)
        k->zone = BPF_CORE_READ(ct, zone.id);
    k->sport = BPF_CORE_READ(t, src.u.all);
    k->dport = BPF_CORE_READ(t, dst.u.all);
    if (l3num == AF_INET) {
        bpf_probe_read_kernel(k->src, 4, &t->src.u3);
        bpf_probe_read_kernel(k->dst, 4, &t->dst.u3);
    } else {
        bpf_probe_read_kernel(k->src, 16, &t->src.u3);
        bpf_probe_read_kernel(k->dst, 16, &t->dst.u3);
    }
    k->start_ns = start_of(ct);
}

static __always_inline void record(struct ctq_drop_key *key, __u32 dir, __u32 len) {
    struct ctq_drop_value *v = bpf_map_lookup_elem(&ctq_drops, key);
    if (!v) {
        struct ctq_drop_value fresh = {};
        bpf_map_update_elem(&ctq_drops, key, &fresh, BPF_NOEXIST);
        v = bpf_map_lookup_elem(&ctq_drops, key);
        if (!v) {
            stat_add(CTQ_STAT_MAP_FULL, 1);
            return;
        }
    }
    __sync_fetch_and_add(&v->bytes[dir & 1], len);
    __sync_fetch_and_add(&v->packets[dir & 1], 1);
    stat_add(CTQ_STAT_PACKETS, 1);
    stat_add(CTQ_STAT_BYTES, len);
}

/* A packet redirected by tc mirred (ctquotad's ifb shaper) lost its
 * conntrack reference on the way (act_mirred resets it). Dropped there, it
 * is a download of a connection the subscriber opened: the reversed packet
 * tuple is the entry's original tuple (SNAT rewrites only the reply tuple),
 * recorded in the reply direction with start 0 and zone 0; the daemon
 * matches it by tuple. */
static __always_inline void record_redirected(struct sk_buff *skb, __u32 netns) {
    if (!BPF_CORE_READ_BITFIELD_PROBED(skb, redirected))
        return;
    if (BPF_CORE_READ(skb, dev, nd_net.net, ns.inum) != netns)
        return;
    unsigned char *head = BPF_CORE_READ(skb, head);
    __u16 nh = BPF_CORE_READ(skb, network_header);
    unsigned char hdr[40];
    if (bpf_probe_read_kernel(hdr, sizeof(hdr), head + nh))
        return;
    struct ctq_drop_key key = {};
    __u32 len, l4;
    if ((hdr[0] >> 4) == 4) {
        len = ((__u32)hdr[2] << 8) | hdr[3];
        key.family = AF_INET;
        key.l4proto = hdr[9];
        __builtin_memcpy(key.src, &hdr[16], 4);
        __builtin_memcpy(key.dst, &hdr[12], 4);
        l4 = (__u32)(hdr[0] & 0xf) * 4;
    } else if ((hdr[0] >> 4) == 6) {
        len = (((__u32)hdr[4] << 8) | hdr[5]) + 40;
        key.family = AF_INET6;
        key.l4proto = hdr[6];
        __builtin_memcpy(key.src, &hdr[24], 16);
        __builtin_memcpy(key.dst, &hdr[8], 16);
        l4 = 40;
    } else {
        return;
    }
    if (key.l4proto != 6 && key.l4proto != 17 && key.l4proto != 136 && key.l4proto != 132 &&
        key.l4proto != 33)
        return; /* ports known to be where the tuple has them; ICMP errors have no entry */
    __u16 ports[2];
    if (l4 > 60 || bpf_probe_read_kernel(ports, sizeof(ports), head + nh + l4))
        return;
    key.sport = ports[1];
    key.dport = ports[0];
    record(&key, 1, len);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(ctq_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason) {
    if (!forwarding_drop(skb, (__u32)reason))
        return 0;
    __u32 zero = 0;
    struct ctq_drop_config *cfg = bpf_map_lookup_elem(&ctq_config, &zero);
    if (!cfg)
        return 0;
    unsigned long nfct = BPF_CORE_READ(skb, _nfct);
    struct nf_conn *ct = (struct nf_conn *)(nfct & ~NFCT_INFOMASK);
    __u32 ctinfo = (__u32)(nfct & NFCT_INFOMASK);
    if (!ct) {
        record_redirected(skb, cfg->netns_inum);
        return 0;
    }
    if (ctinfo > IP_CT_RELATED_REPLY)
        return 0;
    if (!(BPF_CORE_READ(ct, status) & IPS_CONFIRMED))
        return 0;
    if (BPF_CORE_READ(ct, ct_net.net, ns.inum) != cfg->netns_inum)
        return 0;
    __u16 l3num = BPF_CORE_READ(ct, tuplehash[0].tuple.src.l3num);
    __u8 proto = 0;
    __u32 len = ip_length(skb, l3num, &proto);
    if (len == 0)
        return 0;
    if (ctinfo == IP_CT_RELATED || ctinfo == IP_CT_RELATED_REPLY) {
        /* An ICMP error rides on the entry it is about, uncounted; the first
         * packet of an expected connection (same protocol) was counted. */
        __u8 ct_proto = BPF_CORE_READ(ct, tuplehash[0].tuple.dst.protonum);
        if (proto != ct_proto || proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
            return 0;
    }
    struct ctq_drop_key key = {};
    fill_key(&key, ct, l3num);
    record(&key, ctinfo >= IP_CT_IS_REPLY ? 1 : 0, len);
    return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
