#pragma once
// [enforce] of the config as the Enforcer needs it (app::Config::Enforce adds
// `enabled`). A header of its own so the config does not include the Enforcer.

#include <cstdint>
#include <string>

namespace ctquota::enforce {

struct EnforceConfig {
    std::string table = "ctquota";     // nftables table `inet <table>`; others are never touched
    std::string subscriber_interface;  // empty: no tc shaping (throttle = nft policing both ways)
    bool delete_conntrack_on_block = true;
    std::uint64_t arm_quota_below_bytes = 0;  // arm the kernel quota below this (0: always)
    int forward_priority = -5;                // nftables forward hook priority (filter = 0)
    // Nonzero: ORed into the meta mark of every packet from or to a
    // subscriber with a kernel item, for the ISP's flowtable rule to skip.
    std::uint32_t no_offload_mark = 0;
    // The ifb device that holds the HTB tree; the subscriber interface
    // redirects throttled subscribers' downloads to it (tc_netlink.hpp).
    std::string shaper_interface = "ctqshaper";
    // The HTB root's queue for packets no class takes, in packets (set
    // explicitly: HTB takes the device's txqueuelen).
    std::uint32_t direct_queue_packets = 1000;
    // Each of a throttled subscriber's two bands (young connections and
    // ICMP; the rest) holds this many packets (the shaper's txqueuelen).
    std::uint32_t leaf_queue_packets = 16;
};

}  // namespace ctquota::enforce
