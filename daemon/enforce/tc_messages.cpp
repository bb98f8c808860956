#include "enforce/tc_messages.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace ctquota::enforce {
namespace {

tc_ratespec ratespec(std::uint64_t bytes_per_second) {
    tc_ratespec r{};
    r.linklayer = TC_LINKLAYER_ETHERNET;  // no rate table needed
    r.rate = static_cast<std::uint32_t>(std::min<std::uint64_t>(bytes_per_second, ~0u));
    return r;
}

// HTB's burst for a class: 10 ms at the rate plus one packet.
std::uint64_t class_burst_bytes(std::uint64_t bytes_per_second) {
    return bytes_per_second / 100 + 1600;
}

std::uint32_t ticks_for(std::uint64_t burst_bytes, std::uint64_t bytes_per_second) {
    // The kernel keeps buffer times in 64 ns "ticks" (PSCHED_SHIFT 6).
    const auto ns = burst_bytes * 1'000'000'000ull / std::max<std::uint64_t>(bytes_per_second, 1);
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(ns >> 6, ~0u));
}

}  // namespace

nlmsghdr* put_header(std::vector<char>& buf, std::uint16_t type, std::uint16_t flags,
                     std::uint32_t seq) {
    const std::size_t offset = buf.size();
    buf.resize(offset + 1024);  // more than one class message needs
    auto* nlh = mnl_nlmsg_put_header(buf.data() + offset);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    nlh->nlmsg_seq = seq;
    return nlh;
}

void finish(std::vector<char>& buf, const nlmsghdr* nlh) {
    const auto start = reinterpret_cast<const char*>(nlh) - buf.data();
    buf.resize(static_cast<std::size_t>(start) + MNL_ALIGN(nlh->nlmsg_len));
}

tcmsg* put_tcmsg(nlmsghdr* nlh, int ifindex, std::uint32_t handle, std::uint32_t parent) {
    auto* t = static_cast<tcmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(tcmsg)));
    t->tcm_family = AF_UNSPEC;
    t->tcm_ifindex = ifindex;
    t->tcm_handle = handle;
    t->tcm_parent = parent;
    return t;
}

void put_htb_class(std::vector<char>& buf, int ifindex, const HtbClassSpec& spec,
                   std::uint16_t flags, std::uint32_t seq) {
    auto* nlh = put_header(buf, RTM_NEWTCLASS, flags, seq);
    put_tcmsg(nlh, ifindex, spec.classid, spec.parent);
    mnl_attr_put_strz(nlh, TCA_KIND, "htb");
    auto* nest = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    const std::uint64_t bps = spec.rate_bps / 8;
    const std::uint64_t ceil = spec.ceil_bps / 8;
    tc_htb_opt opt{};
    opt.rate = ratespec(bps);
    opt.ceil = ratespec(ceil);
    opt.buffer = ticks_for(class_burst_bytes(bps), bps);
    opt.cbuffer = ticks_for(class_burst_bytes(ceil), ceil);
    opt.quantum = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(ceil / 10, 1600, 200000));
    opt.prio = spec.prio;
    mnl_attr_put(nlh, TCA_HTB_PARMS, sizeof opt, &opt);
    if (bps > 0xFFFFFFFFull || ceil > 0xFFFFFFFFull) {
        mnl_attr_put_u64(nlh, TCA_HTB_RATE64, bps);
        mnl_attr_put_u64(nlh, TCA_HTB_CEIL64, ceil);
    }
    mnl_attr_nest_end(nlh, nest);
    finish(buf, nlh);
}

// The leaf queue of a throttled class (see tc_netlink.hpp for why tbf).
// Handle 0: the kernel picks one. CREATE|REPLACE grafts it over the class's
// default pfifo, and only changes its parameters when our tbf is there already.
void put_leaf_qdisc(std::vector<char>& buf, int ifindex, std::uint32_t classid,
                    std::uint64_t rate_bps, std::uint32_t mtu, std::uint16_t flags,
                    std::uint32_t seq) {
    auto* nlh = put_header(buf, RTM_NEWQDISC, flags, seq);
    put_tcmsg(nlh, ifindex, leaf_queue_handle(classid), classid);
    mnl_attr_put_strz(nlh, TCA_KIND, "tbf");
    auto* nest = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    const std::uint64_t bps = rate_bps / 8;
    const std::uint64_t tbf_bps = bps * kLeafRateFactor;
    // tbf splits a GSO packet larger than its burst into segments, and drops
    // any other packet larger than it: the burst is HTB's, at least one
    // full-sized frame of the interface.
    const auto burst = std::max<std::uint64_t>(class_burst_bytes(bps), mtu + 100ull);
    tc_tbf_qopt opt{};
    opt.rate = ratespec(tbf_bps);
    opt.limit = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(std::max(bps / 1000 * kLeafQueueMs, 2 * burst), ~0u));
    opt.buffer = ticks_for(burst, tbf_bps);
    mnl_attr_put(nlh, TCA_TBF_PARMS, sizeof opt, &opt);
    mnl_attr_put_u32(nlh, TCA_TBF_BURST, static_cast<std::uint32_t>(burst));
    if (tbf_bps > 0xFFFFFFFFull) {
        mnl_attr_put_u64(nlh, TCA_TBF_RATE64, tbf_bps);
    }
    mnl_attr_nest_end(nlh, nest);
    finish(buf, nlh);
}

void put_htb_qdisc(std::vector<char>& buf, int ifindex, std::uint32_t handle, std::uint32_t parent,
                   std::uint16_t flags, std::uint32_t seq, std::uint32_t direct_qlen) {
    auto* nlh = put_header(buf, RTM_NEWQDISC, flags, seq);
    put_tcmsg(nlh, ifindex, handle, parent);
    mnl_attr_put_strz(nlh, TCA_KIND, "htb");
    auto* nest = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    tc_htb_glob glob{};
    glob.version = 3;
    glob.rate2quantum = 10;
    glob.defcls = 0;  // no default class: unclassified packets bypass shaping
    mnl_attr_put(nlh, TCA_HTB_INIT, sizeof glob, &glob);
    if (direct_qlen > 0) {
        mnl_attr_put_u32(nlh, TCA_HTB_DIRECT_QLEN, direct_qlen);
    }
    mnl_attr_nest_end(nlh, nest);
    finish(buf, nlh);
}

namespace {

int load_program(const bpf_insn* insns, std::size_t count, const char* name) {
    static const char kLicense[] = "GPL";
    bpf_attr attr{};
    attr.prog_type = BPF_PROG_TYPE_SCHED_CLS;
    attr.insn_cnt = static_cast<__u32>(count);
    attr.insns = reinterpret_cast<std::uintptr_t>(insns);
    attr.license = reinterpret_cast<std::uintptr_t>(kLicense);
    std::strncpy(attr.prog_name, name, sizeof attr.prog_name - 1);
    return static_cast<int>(syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr));
}

constexpr bpf_insn load_priority() {
    return {BPF_LDX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_1,
            static_cast<__s16>(offsetof(__sk_buff, priority)), 0};
}

}  // namespace

// eBPF (sched_cls, not direct-action): returns the class id
// 1:(S - kHtbFirstShardMajor + 1) for skb->priority S:<minor>. Whatever
// reaches the shaper was redirected for its priority; anything else would
// get a class HTB does not know and go out unshaped.
int load_shard_program() {
    constexpr std::int32_t kToShardClass =
        static_cast<std::int32_t>(kMajor + 1 - kHtbFirstShardMajor);
    const bpf_insn program[] = {
        load_priority(),
        {BPF_ALU64 | BPF_RSH | BPF_K, BPF_REG_0, 0, 0, 16},
        {BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_0, 0, 0, kToShardClass},
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    return load_program(program, std::size(program), "ctquota_shard");
}

// eBPF (sched_cls, not direct-action), on each shard qdisc: the class of a
// young packet, whose priority is its class id with kYoungPriority in the
// low nibble (HTB finds the others by skb->priority without asking).
int load_band_program() {
    const bpf_insn program[] = {
        load_priority(),
        {BPF_ALU | BPF_AND | BPF_K, BPF_REG_0, 0, 0, static_cast<std::int32_t>(~kBandBits)},
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    return load_program(program, std::size(program), "ctquota_band");
}

// eBPF (sched_cls, classic cls_bpf): -1 (match: run the filter's actions)
// for skb->priority majors of our shards, 0 (no match) for everything else.
int load_redirect_program() {
    const bpf_insn program[] = {
        load_priority(),
        {BPF_ALU64 | BPF_RSH | BPF_K, BPF_REG_0, 0, 0, 16},
        {BPF_ALU64 | BPF_SUB | BPF_K, BPF_REG_0, 0, 0, kHtbFirstShardMajor},
        // Unsigned: a major below ours wrapped around to a huge value.
        {BPF_JMP | BPF_JGE | BPF_K, BPF_REG_0, 0, 2, kHtbShards},
        {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, -1},
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
        {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    return load_program(program, std::size(program), "ctquota_redir");
}

void put_classifier(std::vector<char>& buf, int ifindex, std::uint32_t qdisc, int prog_fd,
                    const char* name, std::uint32_t seq) {
    auto* nlh = put_header(buf, RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_CREATE, seq);
    auto* t = put_tcmsg(nlh, ifindex, 1, qdisc);
    t->tcm_info = TC_H_MAKE(1u << 16, htons(ETH_P_ALL));
    mnl_attr_put_strz(nlh, TCA_KIND, "bpf");
    auto* nest = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    mnl_attr_put_u32(nlh, TCA_BPF_FD, static_cast<std::uint32_t>(prog_fd));
    mnl_attr_put_strz(nlh, TCA_BPF_NAME, name);
    mnl_attr_nest_end(nlh, nest);
    finish(buf, nlh);
}

void put_clsact_qdisc(std::vector<char>& buf, int ifindex, std::uint32_t seq) {
    auto* nlh = put_header(buf, RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, seq);
    put_tcmsg(nlh, ifindex, TC_H_MAKE(TC_H_CLSACT, 0), TC_H_CLSACT);
    mnl_attr_put_strz(nlh, TCA_KIND, "clsact");
    finish(buf, nlh);
}

namespace {

constexpr std::uint32_t kEgressHook = TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS);

tcmsg* put_redirect_tcmsg(nlmsghdr* nlh, int ifindex) {
    auto* t = put_tcmsg(nlh, ifindex, 1, kEgressHook);
    t->tcm_info = TC_H_MAKE(kRedirectFilterPref << 16, htons(ETH_P_ALL));
    return t;
}

}  // namespace

void put_redirect_filter(std::vector<char>& buf, int ifindex, int prog_fd, int shaper_ifindex,
                         std::uint32_t seq) {
    auto* nlh = put_header(buf, RTM_NEWTFILTER,
                           NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK, seq);
    put_redirect_tcmsg(nlh, ifindex);
    mnl_attr_put_strz(nlh, TCA_KIND, "bpf");
    auto* options = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    mnl_attr_put_u32(nlh, TCA_BPF_FD, static_cast<std::uint32_t>(prog_fd));
    mnl_attr_put_strz(nlh, TCA_BPF_NAME, kRedirectFilterName);
    auto* actions = mnl_attr_nest_start(nlh, TCA_BPF_ACT);
    auto* first = mnl_attr_nest_start(nlh, 1);
    mnl_attr_put_strz(nlh, TCA_ACT_KIND, "mirred");
    auto* act_options = mnl_attr_nest_start(nlh, TCA_ACT_OPTIONS);
    tc_mirred mirred{};
    mirred.action = TC_ACT_STOLEN;
    mirred.eaction = TCA_EGRESS_REDIR;
    mirred.ifindex = static_cast<__u32>(shaper_ifindex);
    mnl_attr_put(nlh, TCA_MIRRED_PARMS, sizeof mirred, &mirred);
    mnl_attr_nest_end(nlh, act_options);
    mnl_attr_nest_end(nlh, first);
    mnl_attr_nest_end(nlh, actions);
    mnl_attr_nest_end(nlh, options);
    finish(buf, nlh);
}

void put_delete_redirect_filter(std::vector<char>& buf, int ifindex, std::uint32_t seq) {
    auto* nlh = put_header(buf, RTM_DELTFILTER, NLM_F_REQUEST | NLM_F_ACK, seq);
    put_redirect_tcmsg(nlh, ifindex);
    mnl_attr_put_strz(nlh, TCA_KIND, "bpf");
    finish(buf, nlh);
}

void put_new_ifb(std::vector<char>& buf, const std::string& name, std::uint32_t mtu,
                 std::uint32_t txqueuelen, std::uint32_t seq) {
    auto* nlh =
        put_header(buf, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, seq);
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
    mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
    mnl_attr_put_u32(nlh, IFLA_TXQLEN, txqueuelen);
    auto* info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "ifb");
    mnl_attr_nest_end(nlh, info);
    finish(buf, nlh);
}

void put_delete_link(std::vector<char>& buf, int ifindex, std::uint32_t seq) {
    auto* nlh = put_header(buf, RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = ifindex;
    finish(buf, nlh);
}

// The bands: pfifo_fast in place of the tbf's default bfifo. Handle 0: the
// kernel picks one above 0x8000, where our tbf handles never are.
void put_leaf_bands(std::vector<char>& buf, int ifindex, std::uint32_t classid, std::uint16_t flags,
                    std::uint32_t seq) {
    auto* nlh = put_header(buf, RTM_NEWQDISC, flags, seq);
    put_tcmsg(nlh, ifindex, 0, leaf_queue_handle(classid) | 1);
    mnl_attr_put_strz(nlh, TCA_KIND, "pfifo_fast");
    finish(buf, nlh);
}

std::uint32_t leaf_queue_handle(std::uint32_t subscriber_class) {
    const auto shard = (subscriber_class >> 16) - kHtbFirstShardMajor;
    const auto minor = subscriber_class & 0xFFFFu;
    if (shard >= kHtbShards || minor == 0 || minor % kClassStride != 0 ||
        minor / kClassStride > kClassesPerShard) {
        return 0;
    }
    return (kFirstLeafQueueMajor + shard * kClassesPerShard + minor / kClassStride - 1) << 16;
}

std::size_t append_class_message(std::vector<char>& buf, const TcDevice& dev, const TcOp& op,
                                 std::uint32_t seq, bool ack) {
    const std::uint16_t ack_flag = ack ? NLM_F_ACK : 0;
    const std::uint32_t shard = TC_H_MAJ(op.classid);  // the shard's qdisc
    if (op.kind == TcOp::Kind::Delete) {
        // The class's leaf queue goes with it.
        auto* nlh = put_header(buf, RTM_DELTCLASS, NLM_F_REQUEST | ack_flag, seq);
        put_tcmsg(nlh, dev.ifindex, op.classid, shard);
        finish(buf, nlh);
        return 1;
    }
    // Without NLM_F_EXCL: creates the class, or changes it when it exists.
    put_htb_class(buf, dev.ifindex, HtbClassSpec{op.classid, shard, op.rate_bps, op.rate_bps, 0},
                  NLM_F_REQUEST | NLM_F_CREATE | ack_flag, seq);
    put_leaf_qdisc(buf, dev.ifindex, op.classid, op.rate_bps, dev.mtu,
                   NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | ack_flag, seq + 1);
    if (op.queue_in_place) {
        return 2;  // pfifo_fast cannot be changed, only replaced: it stays
    }
    put_leaf_bands(buf, dev.ifindex, op.classid,
                   NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | ack_flag, seq + 2);
    return kSetMessages;
}

}  // namespace ctquota::enforce
