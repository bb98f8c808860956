#pragma once
// Converts ctnetlink messages into core::FlowSample at the edge: nothing past
// this file sees libnetfilter_conntrack types.

#include <linux/netlink.h>

#include <optional>

#include "core/flow.hpp"

struct nf_conntrack;

namespace ctquota::conntrack {

// nullopt for messages that are not conntrack entries of IPv4/IPv6 (expectations, other
// families) or that lack the original tuple; the caller counts them.
std::optional<core::FlowSample> sample_from_conntrack(const nf_conntrack* ct,
                                                      core::SampleKind kind);
std::optional<core::FlowSample> sample_from_message(const nlmsghdr* nlh, core::SampleKind kind);

}  // namespace ctquota::conntrack
