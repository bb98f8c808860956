#pragma once
// Per-network-namespace kernel settings the reader depends on. /proc/sys/net
// resolves to the namespace of the calling process.

#include <cstdint>
#include <optional>
#include <string>

namespace ctquota::conntrack {

std::optional<std::string> read_sysctl(
    const std::string& name);  // "net/netfilter/nf_conntrack_acct"
bool write_sysctl(const std::string& name, const std::string& value);

struct KernelCheck {
    bool accounting_on = false;
    bool timestamps_on = false;
    std::optional<std::uint64_t> rmem_max;
};

// Makes sure nf_conntrack_acct (and timestamps, which make flow keys unique) are
// on, turning them on when allowed. Throws std::runtime_error with a message an
// operator can act on when accounting is off and cannot be turned on.
KernelCheck ensure_conntrack_accounting(bool allow_enable);

}  // namespace ctquota::conntrack
