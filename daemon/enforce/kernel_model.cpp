#include "enforce/kernel_model.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>
#include <map>

#include "enforce/tc_netlink.hpp"

namespace ctquota::enforce {
namespace {

constexpr auto kMaxNftQuota = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

const char* map_stem(MapKind kind) {
    switch (kind) {
        case MapKind::Blocked:
            return "blocked";
        case MapKind::Throttle:
            return "throttle";
        case MapKind::UpLimit:
            return "up_limit";
        case MapKind::DownLimit:
            return "down_limit";
        case MapKind::QuotaUp:
            return "quota_up";
        case MapKind::QuotaDown:
            return "quota_down";
    }
    return "?";
}

void add_elements(SubscriberItems& items, MapKind kind, const std::vector<core::Prefix>& prefixes,
                  const std::string& value) {
    for (const auto& p : prefixes) {
        items.elements.push_back(Element{map_name(kind, p.address.family), p, value});
    }
}

}  // namespace

std::string active_set_name(core::Family family) {
    return family == core::Family::V6 ? "active_v6" : "active_v4";
}

bool is_active_set(std::string_view name) {
    return name == active_set_name(core::Family::V4) || name == active_set_name(core::Family::V6);
}

std::string map_name(MapKind kind, core::Family family) {
    return std::string{map_stem(kind)} + (family == core::Family::V6 ? "_v6" : "_v4");
}

const char* map_value_type(MapKind kind) {
    switch (kind) {
        case MapKind::Blocked:
            return "verdict";
        case MapKind::Throttle:
            return "classid";
        case MapKind::UpLimit:
        case MapKind::DownLimit:
            return "limit";
        case MapKind::QuotaUp:
        case MapKind::QuotaDown:
            return "quota";
    }
    return "?";
}

std::string block_chain_for(const std::string& plan, const ModelContext& ctx) {
    if (!plan.empty() && ctx.plans_with_chain != nullptr && ctx.plans_with_chain->contains(plan)) {
        return "block_" + plan;
    }
    return "block";
}

std::string classid_text(std::uint32_t classid) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%x:%x", classid >> 16, classid & 0xFFFFu);
    return buf;
}

std::optional<std::uint32_t> parse_classid(const std::string& text) {
    const auto colon = text.find(':');
    if (colon == std::string::npos) {
        return std::nullopt;
    }
    unsigned major = 0;
    unsigned minor = 0;
    const char* p = text.data();
    auto r1 = std::from_chars(p, p + colon, major, 16);
    auto r2 = std::from_chars(p + colon + 1, p + text.size(), minor, 16);
    if (r1.ec != std::errc{} || r1.ptr != p + colon || r2.ec != std::errc{} ||
        r2.ptr != p + text.size() || major == 0 || major > 0xFFFF || minor == 0 || minor > 0xFFFF) {
        return std::nullopt;
    }
    return (major << 16) | minor;
}

std::optional<std::uint32_t> throttle_class(const std::string& element_value) {
    const auto leaf = parse_classid(element_value);
    return leaf ? std::optional(class_of_priority(*leaf)) : std::nullopt;
}

std::string limit_name(bool up, core::SubscriberId id) {
    return (up ? "up_" : "down_") + std::to_string(id);
}

std::string quota_name(core::SubscriberId id) {
    return "q_" + std::to_string(id);
}

std::uint64_t limit_burst_bytes(std::uint64_t bytes_per_second) {
    return std::max<std::uint64_t>(bytes_per_second / 10, 16384);
}

bool needs_tc_class(const SubscriberTarget& target, const ModelContext& ctx) {
    return ctx.shaping && target.state.kind == core::StateKind::Throttled &&
           target.state.rate.down_bps > 0 && !target.prefixes.empty();
}

// Not while the downloads are shaped: the quota counts in the forward chain,
// before the shaper drops what does not fit, and dropped bytes are not
// billed (daemon/drops/), so the quota would run out before billing reaches
// the block tier and stop everything short of it. The policers drop before
// the quota rule, so a policed subscriber keeps it. A shaped subscriber is
// blocked by the flush that crosses the tier instead (overshoot: the plan's
// rate for up to a flush interval).
bool quota_armed(const SubscriberTarget& t, const ModelContext& ctx) {
    if (t.state.kind == core::StateKind::Blocked || !t.kernel_quota_bytes ||
        needs_tc_class(t, ctx)) {
        return false;
    }
    return ctx.arm_quota_below_bytes == 0 || *t.kernel_quota_bytes < ctx.arm_quota_below_bytes;
}

SubscriberItems desired_items(const SubscriberTarget& t, const ModelContext& ctx,
                              std::optional<std::uint32_t> classid) {
    SubscriberItems items;
    const auto prefixes = without_nested(t.prefixes);
    if (prefixes.empty()) {
        return items;
    }
    if (t.state.kind == core::StateKind::Blocked) {
        add_elements(items, MapKind::Blocked, prefixes, block_chain_for(t.plan, ctx));
    } else if (t.state.kind == core::StateKind::Throttled) {
        const auto& rate = t.state.rate;
        if (rate.up_bps > 0) {
            LimitObject up{limit_name(true, t.id), rate.up_bps / 8, 0};
            up.burst_bytes = limit_burst_bytes(up.bytes_per_second);
            add_elements(items, MapKind::UpLimit, prefixes, up.name);
            items.limits.push_back(up);
        }
        if (rate.down_bps > 0 && needs_tc_class(t, ctx) && classid) {
            items.tc_class = HtbClass{*classid, rate.down_bps / 8 * 8, true};  // tc keeps bytes/s
            add_elements(items, MapKind::Throttle, prefixes, classid_text(*classid));
        } else if (rate.down_bps > 0 && !ctx.shaping) {
            LimitObject down{limit_name(false, t.id), rate.down_bps / 8, 0};
            down.burst_bytes = limit_burst_bytes(down.bytes_per_second);
            add_elements(items, MapKind::DownLimit, prefixes, down.name);
            items.limits.push_back(down);
        }
    }
    if (quota_armed(t, ctx)) {
        // nft quotas hold at most INT64_MAX bytes; the engine never asks for
        // more (core::kMaxAllowanceBytes), a caller that does gets the most.
        items.quota = QuotaObject{quota_name(t.id), std::min(*t.kernel_quota_bytes, kMaxNftQuota)};
        const bool up = t.counts != core::CountedDirections::Down;
        const bool down = t.counts != core::CountedDirections::Up;
        if (up) {
            add_elements(items, MapKind::QuotaUp, prefixes, items.quota->name);
        }
        if (down) {
            add_elements(items, MapKind::QuotaDown, prefixes, items.quota->name);
        }
    }
    if (!items.elements.empty()) {
        for (const auto& p : prefixes) {  // set elements: no value
            items.elements.push_back(Element{active_set_name(p.address.family), p, {}});
        }
    }
    std::sort(items.elements.begin(), items.elements.end());
    std::sort(items.limits.begin(), items.limits.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    return items;
}

SubscriberDelta diff_items(core::SubscriberId id, const SubscriberItems& have,
                           const SubscriberItems& want, bool fresh_quota) {
    SubscriberDelta d;
    d.id = id;
    // Objects whose definition changed are deleted and re-added (the kernel
    // cannot update a limit in place), together with the elements naming them.
    std::set<std::string> replaced;
    std::map<std::string, const LimitObject*> want_limits;
    for (const auto& l : want.limits) {
        want_limits[l.name] = &l;
    }
    for (const auto& l : have.limits) {
        auto it = want_limits.find(l.name);
        if (it == want_limits.end() || !(*it->second == l)) {
            d.del_objects.push_back(ObjectRef{false, l.name});
            replaced.insert(l.name);
        }
    }
    for (const auto& l : want.limits) {
        const bool had = std::find(have.limits.begin(), have.limits.end(), l) != have.limits.end();
        if (!had) {
            d.add_limits.push_back(l);
        }
    }
    // `add quota` naming an existing object sets its limit and keeps its
    // counter: a lease renewal raises the limit without forgetting the bytes.
    const bool quota_in_place =
        have.quota && want.quota && have.quota->name == want.quota->name && !fresh_quota;
    if (have.quota && !quota_in_place &&
        (!want.quota || !(*want.quota == *have.quota) || fresh_quota)) {
        d.del_objects.push_back(ObjectRef{true, have.quota->name});
        replaced.insert(have.quota->name);
    }
    if (want.quota && (!have.quota || !(*want.quota == *have.quota) || fresh_quota)) {
        d.add_quotas.push_back(*want.quota);
    }
    for (const auto& e : have.elements) {
        const bool kept = std::binary_search(want.elements.begin(), want.elements.end(), e);
        if (!kept || replaced.contains(e.value)) {
            d.del_elements.push_back(e);
        }
    }
    for (const auto& e : want.elements) {
        const bool had = std::binary_search(have.elements.begin(), have.elements.end(), e);
        if (!had || replaced.contains(e.value)) {
            d.add_elements.push_back(e);
            if (e.set.starts_with("blocked_") &&
                std::none_of(have.elements.begin(), have.elements.end(),
                             [&](const Element& h) { return h.set == e.set && h.key == e.key; })) {
                d.newly_blocked.push_back(e.key);
            }
        }
    }
    if (want.tc_class && (!have.tc_class || !(*have.tc_class == *want.tc_class))) {
        d.tc_set.push_back(*want.tc_class);
        d.tc_queue_in_place = have.tc_class && have.tc_class->classid == want.tc_class->classid &&
                              have.tc_class->leaf_queue;
    }
    if (have.tc_class && (!want.tc_class || want.tc_class->classid != have.tc_class->classid)) {
        d.tc_del.push_back(have.tc_class->classid);
    }
    return d;
}

std::vector<core::Prefix> without_nested(std::vector<core::Prefix> prefixes) {
    std::sort(prefixes.begin(), prefixes.end(), [](const auto& a, const auto& b) {
        return a.length < b.length || (a.length == b.length && a < b);
    });
    std::vector<core::Prefix> out;
    for (const auto& p : prefixes) {
        const bool nested = std::any_of(out.begin(), out.end(), [&](const core::Prefix& q) {
            return q.address.family == p.address.family && q.contains(p.address);
        });
        if (!nested) {
            out.push_back(p);
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace ctquota::enforce
