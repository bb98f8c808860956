#include "enforce/enforcer_impl.hpp"

#include <algorithm>
#include <charconv>

namespace ctquota::enforce {
namespace {

std::optional<core::SubscriberId> id_after(const std::string& name, const std::string& prefix) {
    if (!name.starts_with(prefix)) {
        return std::nullopt;
    }
    core::SubscriberId id = 0;
    const char* first = name.data() + prefix.size();
    const char* last = name.data() + name.size();
    auto [ptr, ec] = std::from_chars(first, last, id);
    if (ec != std::errc{} || ptr != last || first == last) {
        return std::nullopt;
    }
    return id;
}

bool ours(const std::string& map) {
    if (is_active_set(map)) {
        return true;
    }
    for (auto kind : kAllMaps) {
        if (map == map_name(kind, core::Family::V4) || map == map_name(kind, core::Family::V6)) {
            return true;
        }
    }
    return false;
}

// Map elements by the owner their comment names.
void group_elements(Loaded& l, SubscriberDelta& orphan) {
    for (const auto& [map, elems] : l.table.maps) {
        if (!ours(map)) {
            continue;
        }
        for (const auto& e : elems) {
            Element el{map, e.key, e.value};
            if (e.owner) {
                l.items[*e.owner].elements.push_back(el);
            } else {
                orphan.del_elements.push_back(el);
            }
        }
    }
}

// Limits and quotas by the owner their name carries.
void group_objects(Loaded& l, SubscriberDelta& orphan) {
    for (const auto& [name, limit] : l.table.limits) {
        auto id = id_after(name, "up_");
        if (!id) {
            id = id_after(name, "down_");
        }
        if (id) {
            l.items[*id].limits.push_back(limit);
        } else {
            orphan.del_objects.push_back(ObjectRef{false, name});
        }
    }
    for (const auto& [name, q] : l.table.quotas) {
        if (auto id = id_after(name, "q_")) {
            l.items[*id].quota = q.first;
        } else {
            orphan.del_objects.push_back(ObjectRef{true, name});
        }
    }
}

// A class belongs to the subscriber whose throttle element points at it; the
// others are orphans. The items are sorted as planned ones are: diff_items
// binary-searches them and compares them whole.
void attach_classes(Loaded& l, SubscriberDelta& orphan) {
    std::set<std::uint32_t> referenced;
    for (auto& [id, items] : l.items) {
        std::sort(items.elements.begin(), items.elements.end());
        std::sort(items.limits.begin(), items.limits.end(),
                  [](const auto& a, const auto& b) { return a.name < b.name; });
        for (const auto& e : items.elements) {
            if (!e.set.starts_with("throttle_")) {
                continue;
            }
            auto classid = throttle_class(e.value);
            if (classid && l.classes.contains(*classid)) {
                items.tc_class =
                    HtbClass{*classid, l.classes.at(*classid), l.leaf_queues.contains(*classid)};
                referenced.insert(*classid);
            }
        }
    }
    for (const auto& [classid, rate] : l.classes) {
        if (!referenced.contains(classid)) {
            orphan.tc_del.push_back(classid);
        }
    }
}

// allow_<plan>_v4 / allow_<plan>_v6, merged per plan.
void group_allowed(Loaded& l) {
    for (const auto& [name, prefixes] : l.table.allow_sets) {
        if (name.starts_with("allow_") && name.size() > 9) {
            auto& list = l.allowed[name.substr(6, name.size() - 9)];
            list.insert(list.end(), prefixes.begin(), prefixes.end());
        }
    }
    for (auto& [plan, list] : l.allowed) {
        list = without_nested(list);
    }
}

}  // namespace

Loaded load_kernel(NftSession& nft, TcLink* tc, const std::string& table) {
    Loaded l;
    if (auto out = nft.list_table(table)) {
        l.table = nftjson::parse_table(*out);
    }
    if (tc != nullptr) {
        l.classes = tc->dump_classes();
        l.leaf_queues = tc->dump_leaf_queues();
    }
    SubscriberDelta orphan;  // id 0: owned by nobody
    group_elements(l, orphan);
    group_objects(l, orphan);
    attach_classes(l, orphan);
    if (!orphan.empty()) {
        l.orphans.push_back(std::move(orphan));
    }
    group_allowed(l);
    return l;
}

KernelState to_kernel_state(const Loaded& l) {
    KernelState s;
    s.table_present = l.table.present;
    s.allowed_by_plan = l.allowed;
    s.tc_classes = l.classes.size();
    for (const auto& [id, items] : l.items) {
        KernelSubscriber k;
        k.id = id;
        for (const auto& e : items.elements) {
            if (std::find(k.prefixes.begin(), k.prefixes.end(), e.key) == k.prefixes.end()) {
                k.prefixes.push_back(e.key);
            }
            if (e.set.starts_with("blocked_")) {
                k.kind = core::StateKind::Blocked;
                k.block_chain = e.value;
            } else if (e.set.starts_with("throttle_")) {
                k.tc_classid = throttle_class(e.value);
            }
        }
        std::sort(k.prefixes.begin(), k.prefixes.end());
        for (const auto& lim : items.limits) {
            (lim.name.starts_with("up_") ? k.rate.up_bps : k.rate.down_bps) =
                lim.bytes_per_second * 8;
        }
        if (items.tc_class) {
            k.rate.down_bps = items.tc_class->rate_bps;
            k.tc_leaf_queue = items.tc_class->leaf_queue;
        }
        if (k.kind != core::StateKind::Blocked && (!items.limits.empty() || items.tc_class)) {
            k.kind = core::StateKind::Throttled;
        }
        if (items.quota) {
            k.quota_bytes = items.quota->bytes;
            k.quota_used_bytes = l.table.quotas.at(items.quota->name).second;
        }
        s.subscribers[id] = std::move(k);
    }
    return s;
}

std::string describe(const SubscriberDelta& d) {
    std::string out;
    auto add = [&](const std::string& s) { out += (out.empty() ? "" : ", ") + s; };
    for (const auto& e : d.del_elements) {
        add("delete " + e.set + " " + e.key.to_string());
    }
    for (const auto& o : d.del_objects) {
        add("delete " + std::string(o.is_quota ? "quota " : "limit ") + o.name);
    }
    for (const auto& lim : d.add_limits) {
        add("add limit " + lim.name + " " + std::to_string(lim.bytes_per_second) + " B/s");
    }
    for (const auto& q : d.add_quotas) {
        add("add quota " + q.name + " " + std::to_string(q.bytes) + " B");
    }
    for (const auto& e : d.add_elements) {
        add("add " + e.set + " " + e.key.to_string() + " -> " + e.value);
    }
    if (out.size() > 300) {
        out = out.substr(0, 300) + "…";
    }
    return out;
}

}  // namespace ctquota::enforce
