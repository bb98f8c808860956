#pragma once
// rtnetlink message builders for the HTB layout of tc_netlink.hpp. Pure
// byte building (load_shard_program aside); internal to enforce/.

#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <string>
#include <vector>

#include "enforce/tc_netlink.hpp"

namespace ctquota::enforce {

inline constexpr std::uint32_t kMajor = 1u << 16;  // the root qdisc's handle 1:

// Appends a message header at the end of `buf`; finish() trims `buf` to it.
nlmsghdr* put_header(std::vector<char>& buf, std::uint16_t type, std::uint16_t flags,
                     std::uint32_t seq);
void finish(std::vector<char>& buf, const nlmsghdr* nlh);
tcmsg* put_tcmsg(nlmsghdr* nlh, int ifindex, std::uint32_t handle, std::uint32_t parent);

struct HtbClassSpec {
    std::uint32_t classid = 0;
    std::uint32_t parent = 0;
    std::uint64_t rate_bps = 0;
    std::uint64_t ceil_bps = 0;
    std::uint32_t prio = 0;  // among siblings that borrow, the lowest is served first
};
void put_htb_class(std::vector<char>& buf, int ifindex, const HtbClassSpec& spec,
                   std::uint16_t flags, std::uint32_t seq);
// The leaf queue of subscriber class `classid`: a tbf with handle
// leaf_queue_handle(classid), and pfifo_fast under it (tc_netlink.hpp).
void put_leaf_bands(std::vector<char>& buf, int ifindex, std::uint32_t classid, std::uint16_t flags,
                    std::uint32_t seq);
void put_leaf_qdisc(std::vector<char>& buf, int ifindex, std::uint32_t classid,
                    std::uint64_t rate_bps, std::uint32_t mtu, std::uint16_t flags,
                    std::uint32_t seq);
// direct_qlen: packets the qdisc queues for unclassified (unthrottled)
// traffic; 0 leaves it to the kernel (the interface's txqueuelen, at least 2).
void put_htb_qdisc(std::vector<char>& buf, int ifindex, std::uint32_t handle, std::uint32_t parent,
                   std::uint16_t flags, std::uint32_t seq, std::uint32_t direct_qlen = 0);
// The shaper root's classifier (eBPF, sched_cls): skb->priority S:x -> class
// 1:(S - kHtbFirstShardMajor + 1). Returns a program fd or -1 (errno set).
int load_shard_program();
// Each shard qdisc's classifier (eBPF, sched_cls): a young priority S:(16j|6)
// -> its class S:16j.
int load_band_program();
// A cls_bpf filter (classic) with handle 1 and priority 1 on `qdisc`.
void put_classifier(std::vector<char>& buf, int ifindex, std::uint32_t qdisc, int prog_fd,
                    const char* name, std::uint32_t seq);

// The subscriber interface's side: a clsact qdisc, and on its egress hook a
// cls_bpf filter (classic, not direct-action) matching skb->priority majors
// of our shards, with a mirred action redirecting what it matches to the
// shaper. mirred, not bpf_redirect(): an ifb drops what was not redirected
// by an action.
inline constexpr const char* kRedirectFilterName = "ctquota_redirect";
inline constexpr std::uint32_t kRedirectFilterPref = 0x3c71;
int load_redirect_program();
void put_clsact_qdisc(std::vector<char>& buf, int ifindex, std::uint32_t seq);
void put_redirect_filter(std::vector<char>& buf, int ifindex, int prog_fd, int shaper_ifindex,
                         std::uint32_t seq);
void put_delete_redirect_filter(std::vector<char>& buf, int ifindex, std::uint32_t seq);

// The shaper device: an ifb, up, with the subscriber interface's MTU.
void put_new_ifb(std::vector<char>& buf, const std::string& name, std::uint32_t mtu,
                 std::uint32_t txqueuelen, std::uint32_t seq);
void put_delete_link(std::vector<char>& buf, int ifindex, std::uint32_t seq);

}  // namespace ctquota::enforce
