#pragma once
// The kernel items one subscriber needs (map elements, nft objects, an HTB
// class), computed from its SubscriberTarget, and the difference between two
// such sets. Pure: no libnftables, no netlink. The same value type is parsed
// back from the kernel, so "installed == desired" is a plain comparison.

#include <compare>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "enforce/enforcer.hpp"

namespace ctquota::enforce {

// The maps of table `inet <table>`; each exists as <name>_v4 and <name>_v6.
enum class MapKind : std::uint8_t { Blocked, Throttle, UpLimit, DownLimit, QuotaUp, QuotaDown };
inline constexpr MapKind kAllMaps[] = {MapKind::Blocked,   MapKind::Throttle, MapKind::UpLimit,
                                       MapKind::DownLimit, MapKind::QuotaUp,  MapKind::QuotaDown};
std::string map_name(MapKind kind, core::Family family);
// The interval set of every prefix that has any kernel item (active_v4 /
// active_v6): the forward chain returns at once for everybody else's
// packets, two lookups instead of a dozen (tests/bench/RESULTS.md).
std::string active_set_name(core::Family family);
bool is_active_set(std::string_view name);  // a set, not a map: elements carry no value
const char* map_value_type(MapKind kind);   // "verdict", "classid", "limit", "quota"

struct Element {
    std::string set;  // e.g. "blocked_v4"
    core::Prefix key;
    std::string value;  // chain name, classid "1:2a", or object name
    auto operator<=>(const Element&) const = default;
};

struct LimitObject {
    std::string name;  // up_<id> / down_<id>
    std::uint64_t bytes_per_second = 0;
    std::uint64_t burst_bytes = 0;
    bool operator==(const LimitObject&) const = default;
};

struct QuotaObject {
    std::string name;  // q_<id>
    std::uint64_t bytes = 0;
    bool operator==(const QuotaObject&) const = default;
};

struct HtbClass {
    std::uint32_t classid = 0;   // <shard major>:<16j>
    std::uint64_t rate_bps = 0;  // rate = ceil
    bool leaf_queue = false;     // our tbf and bands (tc_netlink.hpp), not HTB's pfifo
    bool operator==(const HtbClass&) const = default;
};

struct SubscriberItems {
    std::vector<Element> elements;  // sorted
    std::vector<LimitObject> limits;
    std::optional<QuotaObject> quota;
    std::optional<HtbClass> tc_class;
    bool operator==(const SubscriberItems&) const = default;
    [[nodiscard]] bool empty() const {
        return elements.empty() && limits.empty() && !quota && !tc_class;
    }
};

struct ModelContext {
    bool shaping = false;  // a subscriber interface with HTB exists
    std::uint64_t arm_quota_below_bytes = 0;
    const std::set<std::string>* plans_with_chain = nullptr;  // plans with a block_<plan> chain
};

std::string block_chain_for(const std::string& plan, const ModelContext& ctx);
std::string classid_text(std::uint32_t classid);  // "2:1a" (hex, as tc and nft print it)
std::optional<std::uint32_t> parse_classid(const std::string& text);
// The subscriber class a throttle element's value names.
std::optional<std::uint32_t> throttle_class(const std::string& element_value);
std::string limit_name(bool up, core::SubscriberId id);
std::string quota_name(core::SubscriberId id);
// Burst of a policing limit: 100 ms at the rate, at least 16 KiB.
std::uint64_t limit_burst_bytes(std::uint64_t bytes_per_second);
bool quota_armed(const SubscriberTarget& t, const ModelContext& ctx);

// `classid`: the HTB leaf class to use when the target needs one (the caller allocates).
SubscriberItems desired_items(const SubscriberTarget& target, const ModelContext& ctx,
                              std::optional<std::uint32_t> classid);
bool needs_tc_class(const SubscriberTarget& target, const ModelContext& ctx);

struct ObjectRef {
    bool is_quota = false;  // else a limit
    std::string name;
    auto operator<=>(const ObjectRef&) const = default;
};

// What to change for one subscriber, in the order it must happen:
// tc_set before the nft transaction, tc_del after it.
struct SubscriberDelta {
    core::SubscriberId id = 0;
    std::vector<Element> del_elements;
    std::vector<ObjectRef> del_objects;
    std::vector<LimitObject> add_limits;
    std::vector<QuotaObject> add_quotas;
    std::vector<Element> add_elements;
    std::vector<HtbClass> tc_set;
    // tc_set's class has its leaf queue already (only its rates change).
    bool tc_queue_in_place = false;
    std::vector<std::uint32_t> tc_del;
    std::vector<core::Prefix> newly_blocked;  // prefixes whose conntrack entries go
    [[nodiscard]] bool empty() const {
        return del_elements.empty() && del_objects.empty() && add_limits.empty() &&
               add_quotas.empty() && add_elements.empty() && tc_set.empty() && tc_del.empty();
    }
    [[nodiscard]] std::size_t nft_commands() const {
        return del_elements.size() + del_objects.size() + add_limits.size() + add_quotas.size() +
               add_elements.size();
    }
};

// A quota object whose limit changed is updated in place (nft keeps what it
// counted), unless `fresh_quota`: then it is created again, counting from zero.
SubscriberDelta diff_items(core::SubscriberId id, const SubscriberItems& have,
                           const SubscriberItems& want, bool fresh_quota = false);

// Drops prefixes contained in another one of the list (nft rejects overlaps).
std::vector<core::Prefix> without_nested(std::vector<core::Prefix> prefixes);

}  // namespace ctquota::enforce
