#pragma once
// Flowtables in the gateway's ruleset. Offloaded packets skip the forward
// hook, so blocks, kernel quotas, policers and the throttle mapping do not
// see them, and conntrack counts them only when the flowtable has the
// `counter` flag. ctquota cannot change that (the flowtable and its
// `flow add` rule are the ISP's); it says so, loudly, with what it found.
//
// Read from the text of `list flowtables`: libnftables 1.0.6 leaves the
// flags (counter, offload) out of its JSON.

#include <string>
#include <string_view>
#include <vector>

namespace ctquota::enforce {

struct Flowtable {
    std::string family;  // inet, ip, ip6
    std::string table;
    std::string name;
    std::vector<std::string> devices;
    bool counter = false;  // conntrack keeps counting offloaded packets
    bool offload = false;  // hardware offload (flags offload)
    bool operator==(const Flowtable&) const = default;
};

// Parses the output of `nft list flowtables`; lines it does not know are skipped.
std::vector<Flowtable> parse_flowtables(std::string_view text);

// One sentence for the log: where it is, what it does to accounting and enforcement.
std::string describe(const Flowtable& ft);

}  // namespace ctquota::enforce
