#pragma once
// Converts ctnetlink messages into core::FlowSample at the edge: nothing past
// this file sees netlink attributes.

#include <linux/netlink.h>

#include <optional>

#include "core/flow.hpp"

namespace ctquota::conntrack {

// nullopt for messages that are not conntrack entries of IPv4/IPv6 (expectations, other
// families), that lack a tuple, or that hold a malformed attribute; the caller counts them.
std::optional<core::FlowSample> sample_from_message(const nlmsghdr* nlh, core::SampleKind kind);

}  // namespace ctquota::conntrack
