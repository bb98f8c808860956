#pragma once
// HTB on the subscriber-facing interface through rtnetlink (libmnl).
//
//   root htb 1: (no default class: unclassified traffic goes out unshaped)
//     class 1:<k+1> (100 Gbit/s)  -> htb <k+2>:  k = 0..kHtbShards-1 (shards)
//       class <k+2>:<minor>  one leaf per throttled subscriber, rate = ceil
//
// nftables sets skb->priority to the leaf's class id. The root has one cls_bpf
// filter whose eBPF program (sched_cls, not direct-action; tc_messages.cpp)
// maps priority major M to shard class 1:<M-1>; inside the shard HTB finds
// the leaf by skb->priority itself (no per-subscriber filter). Why shards:
// creating (or deleting) a class makes the kernel walk every class of that
// qdisc (tc_bind_tclass), so one flat qdisc costs O(n^2) for n classes (10k
// classes: ~4 s of kernel CPU here).
// Leaf queue: every leaf class gets a tbf qdisc in place of HTB's default
// pfifo (1000 packets). The pfifo holds whatever arrives: forwarded GSO
// packets of ~64 KB from before the throttle, 25 of them 5.7 s at 2 Mbit/s,
// in front of the subscriber's DNS and new connections. The tbf bounds the
// queue in bytes (kLeafQueueMs at the class rate) and splits a GSO packet
// larger than its burst into segments. Its rate is kLeafRateFactor times the
// class's, so HTB shapes and the tbf never does. fq_codel or cake (per-flow
// fairness, cake's split-gso) would be the better leaf, but this kernel
// (and the CI machines') has neither, nor sfq, codel or fq (measured and
// compared: tests/bench/RESULTS.md). The kernel picks the tbf's handle from
// its 32768 automatic ones: beyond that many throttled subscribers on one
// interface a class keeps its pfifo (counted as an enforcement error).
// Class changes go in batches (one sendmsg, errors matched to their message
// by sequence number) and are read back with an RTM_GETTCLASS dump.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

struct mnl_socket;
struct nlmsghdr;

namespace ctquota::enforce {

inline constexpr std::uint32_t kHtbShards = 64;
inline constexpr std::uint32_t kHtbFirstShardMajor = 2;

inline constexpr std::uint64_t kLeafRateFactor = 2;
inline constexpr std::uint64_t kLeafQueueMs = 50;

struct TcDevice {
    int ifindex = 0;
    std::uint32_t mtu = 1500;
};

struct TcOp {
    enum class Kind : std::uint8_t { Set, Delete } kind = Kind::Set;
    std::uint32_t classid = 0;  // leaf <shard major>:<minor>
    std::uint64_t rate_bps = 0;
    std::string who;  // for error messages, e.g. "subscriber 42"
};

struct TcResult {
    std::size_t messages = 0;
    std::vector<std::pair<std::size_t, std::string>> errors;  // index into ops, message
    // The class is set but its leaf queue is not (it keeps HTB's pfifo).
    std::vector<std::pair<std::size_t, std::string>> leaf_errors;
};

// Pure message building (golden-testable): appends RTM_NEWTCLASS and the
// leaf's RTM_NEWQDISC (sequence numbers seq, seq + 1), or one RTM_DELTCLASS,
// to `buf`; returns the number of messages.
std::size_t append_class_message(std::vector<char>& buf, const TcDevice& dev, const TcOp& op,
                                 std::uint32_t seq, bool ack);

class TcLink {
  public:
    // direct_queue_packets: the root's queue for unthrottled traffic (what
    // every unthrottled subscriber's downloads go through), set explicitly:
    // HTB would take the interface's txqueuelen, 0 on a VLAN (then 2 packets).
    TcLink(std::string interface, std::uint32_t direct_queue_packets);
    ~TcLink();
    TcLink(const TcLink&) = delete;
    TcLink& operator=(const TcLink&) = delete;

    // Idempotent: keeps an existing htb 1: root (replaces any other root
    // qdisc), then makes sure the shard classes, qdiscs and the filter exist.
    void ensure_root();
    void remove_root();
    // Empty while the HTB root 1: is on the interface under the index it
    // had at construction; else what changed (the interface is gone or was
    // created again: a new TcLink is needed; the root qdisc was deleted).
    std::string root_damage();
    std::map<std::uint32_t, std::uint64_t> dump_classes();  // leaf classid -> rate (bit/s)
    std::set<std::uint32_t> dump_leaf_queues();             // leaf classids that have our tbf
    TcResult run(const std::vector<TcOp>& ops);
    [[nodiscard]] int ifindex() const { return dev_.ifindex; }

  private:
    std::string interface_;
    TcDevice dev_;
    std::uint32_t direct_queue_packets_ = 0;
    mnl_socket* nl_ = nullptr;
    std::uint32_t seq_ = 0;
    std::uint32_t portid_ = 0;

    // Sends an RTM_GET* dump request, calls `cb` for each answer.
    void dump(std::uint16_t type, int (*cb)(const nlmsghdr*, void*), void* data);
    int transact(std::vector<char>& buf);  // single request with ACK; returns -errno or 0
    bool htb_root_present();
    // Sends messages with sequence numbers first_seq..seq_ in one sendmsg (the
    // last one asks for an ACK); returns (index, error) of the failed ones.
    std::vector<std::pair<std::size_t, int>> send_batch(std::vector<char>& buf,
                                                        std::uint32_t first_seq);
};

}  // namespace ctquota::enforce
