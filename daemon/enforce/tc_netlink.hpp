#pragma once
// Download shaping through rtnetlink (libmnl), on a dedicated IFB device so
// that unthrottled traffic never meets a queue of ours:
//
//   subscriber interface: clsact, one egress cls_bpf filter ("ctquota_redirect")
//     whose program matches packets with skb->priority in our range and whose
//     mirred action redirects them to the shaper (an ifb device); every other
//     packet goes on to the interface's own root qdisc, untouched
//   shaper (ifb): root htb 1: (no default class)
//     class 1:<k+1> (100 Gbit/s)  -> htb <k+0x40>:   k = 0..kHtbShards-1 (shards)
//       class <S>:<16j>   one per throttled subscriber, rate = ceil = the plan's
//         tbf <T>:          GSO packets split, HTB does the shaping
//           pfifo_fast      band 0: young connections and ICMP; band 1: the rest
//
// nftables sets skb->priority to the subscriber's class id, and for ICMP and
// connections that have carried fewer than kYoungFlowPackets packets ORs
// kYoungPriority into its low nibble (nft_json.cpp). The shaper's root has
// one cls_bpf filter (sched_cls, not direct-action; tc_messages.cpp) mapping
// the priority major S to shard class 1:(S-0x3f). Inside the shard, HTB
// finds the class by skb->priority itself; a young packet's priority names
// no class, and the shard's own cls_bpf filter clears its low nibble. The
// leaf's pfifo_fast reads the low nibble again: band 0 (young) is served
// before band 1, each band a ring of its own.
// Why shards: creating (or deleting) a class makes the kernel walk every
// class of that qdisc (tc_bind_tclass), so one flat qdisc costs O(n^2) for
// n classes (10k classes: ~4 s of kernel CPU here); and every class costs a
// filter block that the kernel keeps on one global list (flow_indr), which
// is why a subscriber gets one class, not a class per band.
// Why the IFB: an HTB root on the subscriber interface put every unthrottled
// packet through HTB's direct queue and its root lock, and replaced the
// ISP's own root qdisc; the clsact hook is lockless and costs unthrottled
// packets one small program.
// Why bands: with one FIFO per subscriber, a new connection's first packets
// (a DNS answer, a SYN-ACK, the first bytes of a page) wait behind the
// subscriber's bulk download and are tail-dropped when it fills the queue:
// seconds of delay. Band 0 is served first, like fq_codel's sparse flows;
// the kernels here have no fq_codel, cake or sfq.
// The tbf: HTB's default leaf is a pfifo that holds whatever arrives, e.g.
// forwarded GSO packets of ~64 KB from before the throttle (25 of them: 5.7 s
// at 2 Mbit/s). The tbf splits GSO packets larger than its burst (10 ms at
// the plan's rate) into segments before they reach the bands, whose rings
// hold `leaf_queue_packets` each; its rate is kLeafRateFactor times the
// class's, so HTB shapes and the tbf never does. Its handle is derived from
// the class (leaf_queue_handle), so the band qdisc can be put under it.
// Class changes go in batches (one sendmsg, errors matched to their message
// by sequence number) and are read back with RTM_GETTCLASS dumps.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

struct mnl_socket;
struct nlmsghdr;

namespace ctquota::enforce {

class TcPrograms;

inline constexpr std::uint32_t kHtbShards = 64;
// 0x40..0x7f: one mask tells our priorities from anybody else's (nft_json.cpp).
inline constexpr std::uint32_t kHtbFirstShardMajor = 0x40;
inline constexpr std::uint32_t kShardMajorMask = 0xFFC00000;
// Subscriber classes have minors 16j (j = 1..kClassesPerShard): the low
// nibble of the priority is the pfifo_fast band's (TC_PRIO_INTERACTIVE, 6:
// band 0; 0: band 1).
inline constexpr std::uint32_t kClassStride = 16;
inline constexpr std::uint32_t kClassesPerShard = 500;
inline constexpr std::uint32_t kBandBits = 0xF;
inline constexpr std::uint32_t kYoungPriority = 6;
// A connection is young while it has carried fewer packets than this.
inline constexpr std::uint32_t kYoungFlowPackets = 32;
// Leaf queue handles: majors 0x80..0x7d7f, below the kernel's automatic ones
// (0x8001..), which the bands get: 32000 throttled subscribers per shaper.
inline constexpr std::uint32_t kFirstLeafQueueMajor = 0x80;

// The class a priority (young or not) belongs to.
inline std::uint32_t class_of_priority(std::uint32_t priority) {
    return priority & ~kBandBits;
}
// The tbf under subscriber class S:16j: a handle of its own; 0 when the
// class is not one of ours.
std::uint32_t leaf_queue_handle(std::uint32_t subscriber_class);

inline constexpr std::uint64_t kLeafRateFactor = 2;
inline constexpr std::uint64_t kLeafQueueMs = 50;

struct TcDevice {
    int ifindex = 0;
    std::uint32_t mtu = 1500;
};

struct TcConfig {
    std::string interface;  // the subscriber-facing interface
    std::string shaper;     // the ifb device that holds the HTB tree (created when missing)
    // The HTB root's queue for packets no class takes, set explicitly: HTB
    // would take the device's txqueuelen.
    std::uint32_t direct_queue_packets = 1000;
    // Each band of a throttled subscriber's queue holds this many packets
    // (the shaper's txqueuelen, which pfifo_fast sizes its rings by).
    std::uint32_t leaf_queue_packets = 16;
};

struct TcOp {
    enum class Kind : std::uint8_t { Set, Delete } kind = Kind::Set;
    std::uint32_t classid = 0;  // the subscriber's class <shard major>:<16j>
    std::uint64_t rate_bps = 0;
    std::string who;  // for error messages, e.g. "subscriber 42"
    // Set: the leaf queue (tbf and bands) is ours already; only the rates
    // change (the bands cannot be changed, only replaced).
    bool queue_in_place = false;
};

struct TcResult {
    std::size_t messages = 0;
    std::vector<std::pair<std::size_t, std::string>> errors;  // index into ops, message
    // The class is set but its leaf queue is not (it keeps HTB's pfifo).
    std::vector<std::pair<std::size_t, std::string>> leaf_errors;
};

// Pure message building (golden-testable): appends, from sequence number
// `seq` on, a Set's RTM_NEWTCLASS and the two RTM_NEWQDISC of its leaf queue
// (the tbf, the bands under it), or a Delete's RTM_DELTCLASS (the leaf queue
// goes with its class), to `buf`; returns the number of messages.
inline constexpr std::size_t kSetMessages = 3;
std::size_t append_class_message(std::vector<char>& buf, const TcDevice& dev, const TcOp& op,
                                 std::uint32_t seq, bool ack);

class TcLink {
  public:
    TcLink(TcConfig config, std::shared_ptr<const TcPrograms> programs);
    ~TcLink();
    TcLink(const TcLink&) = delete;
    TcLink& operator=(const TcLink&) = delete;

    // Idempotent: creates the shaper when missing, keeps an existing htb 1:
    // root on it (replaces any other root qdisc), makes sure the shard
    // classes, qdiscs and classifier exist, and the redirect filter on the
    // subscriber interface. Removes the HTB root an older ctquotad put on the
    // subscriber interface itself.
    void ensure_root();
    // Our filter off the subscriber interface, the shaper deleted.
    void remove_root();
    // Empty while everything ensure_root() made is in place under the
    // indexes it had; else what changed (an interface is gone or was created
    // again: a new TcLink is needed; a qdisc or the filter was deleted).
    std::string root_damage();
    // Subscriber classes -> rate (bit/s).
    std::map<std::uint32_t, std::uint64_t> dump_classes();
    // Subscriber classes whose leaf queue is ours: the tbf and its bands.
    std::set<std::uint32_t> dump_leaf_queues();
    TcResult run(const std::vector<TcOp>& ops);
    [[nodiscard]] int ifindex() const { return dev_.ifindex; }

  private:
    TcConfig config_;
    std::shared_ptr<const TcPrograms> programs_;
    TcDevice dev_;    // the subscriber interface
    int shaper_ = 0;  // the ifb's index, once ensure_root() made or found it
    mnl_socket* nl_ = nullptr;
    std::uint32_t seq_ = 0;
    std::uint32_t portid_ = 0;

    // Sends one request (a dump or a single GET), calls `cb` for each answer.
    void request(std::vector<char>& req, int (*cb)(const nlmsghdr*, void*), void* data);
    // An RTM_GET* dump for `ifindex` (and `parent`; 0: every parent).
    void dump(std::uint16_t type, int ifindex, std::uint32_t parent,
              int (*cb)(const nlmsghdr*, void*), void* data);
    int transact(std::vector<char>& buf);  // single request with ACK; returns -errno or 0
    bool htb_root_present(int ifindex);
    bool redirect_present();
    void ensure_shaper();
    void ensure_redirect();
    void remove_old_root();
    // Sends messages with sequence numbers first_seq..seq_ in one sendmsg (the
    // last one asks for an ACK); returns (index, error) of the failed ones.
    std::vector<std::pair<std::size_t, int>> send_batch(std::vector<char>& buf,
                                                        std::uint32_t first_seq);
};

}  // namespace ctquota::enforce
