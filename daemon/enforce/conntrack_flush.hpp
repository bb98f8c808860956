#pragma once
// Deletes the conntrack entries of blocked subscribers so that established
// connections stop at once (the block drops their packets anyway; deleting
// the entries also ends NAT state and frees the table).

#include <cstddef>
#include <string>
#include <vector>

#include "core/address.hpp"

namespace ctquota::enforce {

struct ConntrackFlushResult {
    std::size_t deleted = 0;
    std::string error;  // empty: fine
};

// Entries whose original source, original destination or reply destination
// lies in one of `prefixes`. One dump for all of them, then one delete each.
ConntrackFlushResult delete_conntrack_entries(const std::vector<core::Prefix>& prefixes);

}  // namespace ctquota::enforce
