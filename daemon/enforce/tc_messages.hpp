#pragma once
// rtnetlink message builders for the HTB layout of tc_netlink.hpp. Pure
// byte building (load_shard_program aside); internal to enforce/.

#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <vector>

#include "enforce/tc_netlink.hpp"

namespace ctquota::enforce {

inline constexpr std::uint32_t kMajor = 1u << 16;  // the root qdisc's handle 1:

// Appends a message header at the end of `buf`; finish() trims `buf` to it.
nlmsghdr* put_header(std::vector<char>& buf, std::uint16_t type, std::uint16_t flags,
                     std::uint32_t seq);
void finish(std::vector<char>& buf, const nlmsghdr* nlh);
tcmsg* put_tcmsg(nlmsghdr* nlh, int ifindex, std::uint32_t handle, std::uint32_t parent);

void put_htb_class(std::vector<char>& buf, int ifindex, std::uint32_t classid, std::uint32_t parent,
                   std::uint64_t rate_bps, std::uint16_t flags, std::uint32_t seq);
void put_leaf_qdisc(std::vector<char>& buf, int ifindex, std::uint32_t classid,
                    std::uint64_t rate_bps, std::uint32_t mtu, std::uint16_t flags,
                    std::uint32_t seq);
// direct_qlen: packets the qdisc queues for unclassified (unthrottled)
// traffic; 0 leaves it to the kernel (the interface's txqueuelen, at least 2).
void put_htb_qdisc(std::vector<char>& buf, int ifindex, std::uint32_t handle, std::uint32_t parent,
                   std::uint16_t flags, std::uint32_t seq, std::uint32_t direct_qlen = 0);
// The root's classifier (eBPF, sched_cls): skb->priority M:x -> class 1:(M-1).
// Returns a program fd or -1 (errno set).
int load_shard_program();
void put_shard_filter(std::vector<char>& buf, int ifindex, int prog_fd, std::uint32_t seq);

}  // namespace ctquota::enforce
