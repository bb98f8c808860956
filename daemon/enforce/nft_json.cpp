#include "enforce/nft_json.hpp"

#include <charconv>
#include <stdexcept>

#include "enforce/tc_netlink.hpp"

namespace ctquota::enforce::nftjson {
namespace {

const char* kFamily = "inet";

Json obj_base(const std::string& table, const std::string& name) {
    return Json{{"family", kFamily}, {"table", table}, {"name", name}};
}

Json payload(core::Family f, const char* field) {
    return Json{
        {"payload", {{"protocol", f == core::Family::V6 ? "ip6" : "ip"}, {"field", field}}}};
}

Json rule(const std::string& table, const std::string& chain, Json expr,
          const std::string& comment = {}) {
    Json r = {{"family", kFamily}, {"table", table}, {"chain", chain}, {"expr", std::move(expr)}};
    if (!comment.empty()) {
        r["comment"] = comment;
    }
    return Json{{"add", {{"rule", r}}}};
}

// Marks the skeleton's rules: a restart finds them and leaves the chains
// alone (no flush, so no moment without the block rules). Bump it whenever
// skeleton() changes its rules; the subscriber interface the head names is
// part of it, so that a changed interface refills the chain.
std::string skeleton_tag(const EnforceConfig& cfg) {
    std::string tag = "ctquota skeleton v5";
    return cfg.subscriber_interface.empty() ? tag : tag + " " + cfg.subscriber_interface;
}

Json map_ref(core::Family f, const char* field, const std::string& map) {
    return Json{{"map", {{"key", payload(f, field)}, {"data", "@" + map}}}};
}

Json key_json(const core::Prefix& p) {
    return Json{{"prefix", {{"addr", p.address.to_string()}, {"len", p.length}}}};
}

std::string allow_set(const std::string& plan, core::Family f) {
    return "allow_" + plan + (f == core::Family::V6 ? "_v6" : "_v4");
}

std::optional<core::SubscriberId> parse_id(const std::string& text) {
    core::SubscriberId id = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc{} || ptr != text.data() + text.size()) {
        return std::nullopt;
    }
    return id;
}

// libnftables prints byte rates in the largest exact unit ("16 kbytes").
std::uint64_t unit(const Json& obj, const char* key) {
    const auto u = obj.value(key, std::string("bytes"));
    return u == "kbytes" ? 1024ull : u == "mbytes" ? 1024ull * 1024 : 1ull;
}

constexpr core::Family kFamilies[] = {core::Family::V4, core::Family::V6};

Json not_active(core::Family f, const char* field) {
    return {{"match",
             {{"op", "!="}, {"left", payload(f, field)}, {"right", "@" + active_set_name(f)}}}};
}

Json interface_is(const char* key, bool equal, const std::string& name) {
    return {{"match",
             {{"op", equal ? "==" : "!="}, {"left", {{"meta", {{"key", key}}}}}, {"right", name}}}};
}

// First in the forward chain, per family: a packet whose addresses are
// outside the active set (nobody with a kernel item) leaves the chain at
// once. With a subscriber interface, a download (out through it, not in)
// needs only its destination looked up and an upload only its source; the
// rest (hairpin, transit) both. Then, with a no-offload mark, every packet
// still here gets it ORed into its meta mark, so that the ISP's `flow add`
// rule can leave it in the forward path (README: Flowtable offload).
void add_chain_head(Json& c, const EnforceConfig& cfg) {
    const auto tag = skeleton_tag(cfg);
    const auto& sub = cfg.subscriber_interface;
    for (auto f : kFamilies) {
        if (!sub.empty()) {
            c.push_back(rule(cfg.table, "forward",
                             Json::array({interface_is("oifname", true, sub),
                                          interface_is("iifname", false, sub),
                                          not_active(f, "daddr"),
                                          {{"return", nullptr}}}),
                             tag));
            c.push_back(rule(cfg.table, "forward",
                             Json::array({interface_is("iifname", true, sub),
                                          interface_is("oifname", false, sub),
                                          not_active(f, "saddr"),
                                          {{"return", nullptr}}}),
                             tag));
        }
        c.push_back(rule(
            cfg.table, "forward",
            Json::array({not_active(f, "saddr"), not_active(f, "daddr"), {{"return", nullptr}}}),
            tag));
    }
    if (cfg.no_offload_mark != 0) {
        const Json set_mark = {
            {"mangle",
             {{"key", {{"meta", {{"key", "mark"}}}}},
              {"value",
               {{"|", Json::array({{{"meta", {{"key", "mark"}}}}, cfg.no_offload_mark})}}}}}};
        c.push_back(rule(cfg.table, "forward", Json::array({set_mark}), tag));
    }
}

// After the throttle mapping: a packet headed for a class of ours gets the
// young band's priority in the low nibble (S:16j -> S:16j|6) when its
// connection is young or it is ICMP (tc_netlink.hpp: why).
void add_young_flow_rules(Json& c, const std::string& table, const std::string& tag) {
    const Json priority = {{"meta", {{"key", "priority"}}}};
    const Json to_our_class = {
        {"match",
         {{"op", "=="},
          {"left", {{"&", Json::array({priority, classid_text(kShardMajorMask | kBandBits)})}}},
          {"right", classid_text(kHtbFirstShardMajor << 16)}}}};
    const Json to_young = {
        {"mangle",
         {{"key", priority},
          {"value", {{"|", Json::array({priority, classid_text(kYoungPriority)})}}}}}};
    const Json young = {
        {"match",
         {{"op", "<"}, {"left", {{"ct", {{"key", "packets"}}}}}, {"right", kYoungFlowPackets}}}};
    const Json icmp = {{"match",
                        {{"op", "=="},
                         {"left", {{"meta", {{"key", "l4proto"}}}}},
                         {"right", {{"set", Json::array({"icmp", "ipv6-icmp"})}}}}}};
    for (const Json& which : {young, icmp}) {
        c.push_back(rule(table, "forward", Json::array({to_our_class, which, to_young}), tag));
    }
}

}  // namespace

Json skeleton(const EnforceConfig& cfg, bool refill_chains) {
    const auto& table = cfg.table;
    const auto tag = skeleton_tag(cfg);
    Json c = Json::array();
    c.push_back({{"add", {{"table", {{"family", kFamily}, {"name", table}}}}}});
    for (auto kind : kAllMaps) {
        for (auto f : kFamilies) {
            Json m = obj_base(table, map_name(kind, f));
            m["type"] = f == core::Family::V6 ? "ipv6_addr" : "ipv4_addr";
            m["map"] = map_value_type(kind);
            m["flags"] = Json::array({"interval"});
            c.push_back({{"add", {{"map", m}}}});
        }
    }
    for (auto f : kFamilies) {
        Json set = obj_base(table, active_set_name(f));
        set["type"] = f == core::Family::V6 ? "ipv6_addr" : "ipv4_addr";
        set["flags"] = Json::array({"interval"});
        c.push_back({{"add", {{"set", set}}}});
    }
    c.push_back({{"add", {{"chain", obj_base(table, "block")}}}});
    Json fwd = obj_base(table, "forward");
    fwd.update({{"type", "filter"},
                {"hook", "forward"},
                {"prio", cfg.forward_priority},
                {"policy", "accept"}});
    c.push_back({{"add", {{"chain", fwd}}}});
    if (!refill_chains) {
        return c;
    }
    c.push_back({{"flush", {{"chain", obj_base(table, "block")}}}});
    c.push_back(rule(table, "block", Json::array({{{"drop", nullptr}}}), tag));
    c.push_back({{"flush", {{"chain", obj_base(table, "forward")}}}});
    add_chain_head(c, cfg);
    // Order: blocked first (nothing else matters then), policing before the
    // quota (dropped packets do not consume it), the HTB class mark last.
    for (auto f : kFamilies) {
        for (const char* field : {"saddr", "daddr"}) {
            Json vmap = {
                {"vmap",
                 {{"key", payload(f, field)}, {"data", "@" + map_name(MapKind::Blocked, f)}}}};
            c.push_back(rule(table, "forward", Json::array({vmap}), tag));
        }
    }
    const Json drop = {{"drop", nullptr}};
    for (auto f : kFamilies) {
        c.push_back(rule(
            table, "forward",
            Json::array({{{"limit", map_ref(f, "saddr", map_name(MapKind::UpLimit, f))}}, drop}),
            tag));
        c.push_back(rule(
            table, "forward",
            Json::array({{{"limit", map_ref(f, "daddr", map_name(MapKind::DownLimit, f))}}, drop}),
            tag));
        c.push_back(rule(
            table, "forward",
            Json::array({{{"quota", map_ref(f, "saddr", map_name(MapKind::QuotaUp, f))}}, drop}),
            tag));
        c.push_back(rule(
            table, "forward",
            Json::array({{{"quota", map_ref(f, "daddr", map_name(MapKind::QuotaDown, f))}}, drop}),
            tag));
        Json mangle = {{"mangle",
                        {{"key", {{"meta", {{"key", "priority"}}}}},
                         {"value", map_ref(f, "daddr", map_name(MapKind::Throttle, f))}}}};
        c.push_back(rule(table, "forward", Json::array({mangle}), tag));
    }
    add_young_flow_rules(c, table, tag);
    return c;
}

bool skeleton_in_place(const Json& listing, const EnforceConfig& cfg) {
    const auto tag = skeleton_tag(cfg);
    std::map<std::string, std::size_t> want;  // chain -> tagged rules skeleton() adds
    for (const auto& cmd : skeleton(cfg, true)) {
        if (cmd.contains("add") && cmd["add"].contains("rule")) {
            ++want[cmd["add"]["rule"].at("chain").get<std::string>()];
        }
    }
    std::map<std::string, std::size_t> have;
    bool forward_ok = false;
    for (const auto& item : listing.value("nftables", Json::array())) {
        if (item.contains("chain") && item["chain"].value("name", "") == "forward") {
            const auto& ch = item["chain"];
            forward_ok = ch.value("hook", "") == "forward" &&
                         ch.value("prio", cfg.forward_priority + 1) == cfg.forward_priority;
        } else if (item.contains("rule")) {
            const auto& r = item["rule"];
            const auto chain = r.value("chain", "");
            if (!want.contains(chain)) {
                continue;
            }
            if (r.value("comment", "") != tag) {
                return false;  // a foreign or outdated rule in our chain: refill
            }
            ++have[chain];
        }
    }
    return forward_ok && have == want;
}

void plan_containers(Json& cmds, const std::string& table, const std::string& plan) {
    for (auto f : kFamilies) {
        Json s = obj_base(table, allow_set(plan, f));
        s["type"] = f == core::Family::V6 ? "ipv6_addr" : "ipv4_addr";
        s["flags"] = Json::array({"interval"});
        cmds.push_back({{"add", {{"set", s}}}});
    }
    cmds.push_back({{"add", {{"chain", obj_base(table, "block_" + plan)}}}});
}

void plan_contents(Json& cmds, const std::string& table, const std::string& plan,
                   const std::vector<core::Prefix>& allowed) {
    const std::string chain = "block_" + plan;
    for (auto f : kFamilies) {
        cmds.push_back({{"flush", {{"set", obj_base(table, allow_set(plan, f))}}}});
        Json elems = Json::array();
        for (const auto& p : allowed) {
            if (p.address.family == f) {
                elems.push_back(key_json(p));
            }
        }
        if (!elems.empty()) {
            Json e = obj_base(table, allow_set(plan, f));
            e["elem"] = elems;
            cmds.push_back({{"add", {{"element", e}}}});
        }
    }
    cmds.push_back({{"flush", {{"chain", obj_base(table, chain)}}}});
    for (auto f : kFamilies) {
        for (const char* field : {"daddr", "saddr"}) {
            Json match = {
                {"match",
                 {{"op", "=="}, {"left", payload(f, field)}, {"right", "@" + allow_set(plan, f)}}}};
            cmds.push_back(rule(table, chain, Json::array({match, {{"accept", nullptr}}})));
        }
    }
    cmds.push_back(rule(table, chain, Json::array({{{"drop", nullptr}}})));
}

void delete_plan(Json& cmds, const std::string& table, const std::string& plan) {
    cmds.push_back({{"delete", {{"chain", obj_base(table, "block_" + plan)}}}});
    for (auto f : kFamilies) {
        cmds.push_back({{"delete", {{"set", obj_base(table, allow_set(plan, f))}}}});
    }
}

namespace {

std::string quoted(const std::string& s) {
    return Json(s).dump();
}

std::string key_text(const core::Prefix& p) {
    return R"({"prefix":{"addr":")" + p.address.to_string() + R"(","len":)" +
           std::to_string(p.length) + "}}";
}

std::string value_text(const Element& e) {
    if (e.set.starts_with("blocked_")) {
        return R"({"jump":{"target":)" + quoted(e.value) + "}}";
    }
    return quoted(e.value);
}

void append(std::string& list, const std::string& item) {
    if (!list.empty()) {
        list += ',';
    }
    list += item;
}

std::string element_text(const std::string& quoted_owner, const Element& e) {
    const std::string elem =
        R"({"elem":{"val":)" + key_text(e.key) + R"(,"comment":)" + quoted_owner + "}}";
    return e.value.empty() ? elem : "[" + elem + "," + value_text(e) + "]";  // set / map
}

}  // namespace

void Batch::add(const SubscriberDelta& d) {
    const std::string comment = quoted(std::to_string(d.id));
    for (const auto& e : d.del_elements) {
        append(del_elements_[e.set], key_text(e.key));
    }
    for (const auto& o : d.del_objects) {
        del_objects_.push_back(
            {{"delete", {{o.is_quota ? "quota" : "limit", obj_base(table_, o.name)}}}});
    }
    for (const auto& l : d.add_limits) {
        Json j = obj_base(table_, l.name);
        j.update({{"rate", l.bytes_per_second},
                  {"per", "second"},
                  {"rate_unit", "bytes"},
                  {"burst", l.burst_bytes},
                  {"burst_unit", "bytes"},
                  {"inv", true}});
        add_objects_.push_back({{"add", {{"limit", j}}}});
    }
    for (const auto& q : d.add_quotas) {
        Json j = obj_base(table_, q.name);
        j.update({{"bytes", q.bytes}, {"used", 0}, {"inv", true}});
        add_objects_.push_back({{"add", {{"quota", j}}}});
    }
    for (const auto& e : d.add_elements) {
        append(add_elements_[e.set], element_text(comment, e));
    }
    commands_ += d.nft_commands();
}

void Batch::replace(const std::string& set,
                    const std::vector<std::pair<core::SubscriberId, Element>>& contents) {
    del_elements_.erase(set);
    auto& list = add_elements_[set];
    list.clear();
    for (const auto& [owner, e] : contents) {
        append(list, element_text(quoted(std::to_string(owner)), e));
    }
    if (list.empty()) {
        add_elements_.erase(set);
    }
    flushed_.insert(set);
    ++commands_;
}

std::string Batch::build(const Json& before) const {
    std::string out = R"({"nftables":[)";
    std::string cmds;
    for (const auto& x : before) {
        append(cmds, x.dump());
    }
    const std::string base = R"({"family":"inet","table":)" + quoted(table_) + R"(,"name":)";
    for (const auto& set : flushed_) {  // before objects their elements point at go
        const char* kind = is_active_set(set) ? "set" : "map";
        append(cmds, std::string(R"({"flush":{")") + kind + R"(":)" + base + quoted(set) + "}}}");
    }
    for (const auto& [set, elems] : del_elements_) {
        append(cmds,
               R"({"delete":{"element":)" + base + quoted(set) + R"(,"elem":[)" + elems + "]}}}");
    }
    for (const auto& x : del_objects_) {
        append(cmds, x.dump());
    }
    for (const auto& x : add_objects_) {
        append(cmds, x.dump());
    }
    for (const auto& [set, elems] : add_elements_) {
        append(cmds,
               R"({"add":{"element":)" + base + quoted(set) + R"(,"elem":[)" + elems + "]}}}");
    }
    return out + cmds + "]}";
}

std::optional<core::Prefix> parse_key(const Json& key) {
    if (key.is_string()) {
        return core::Prefix::parse(key.get<std::string>());
    }
    if (key.is_object() && key.contains("prefix")) {
        const auto& p = key["prefix"];
        auto addr = core::IpAddress::parse(p.at("addr").get<std::string>());
        if (!addr) {
            return std::nullopt;
        }
        return core::Prefix::make(*addr, p.at("len").get<int>());
    }
    return std::nullopt;  // ranges: never written by us
}

namespace {

// Elements of our active sets: a key with the owner in its comment, no value.
void parse_owned_set(const Json& set, std::vector<ParsedElement>& out) {
    for (const auto& item : set.value("elem", Json::array())) {
        if (!item.is_object() || !item.contains("elem")) {
            if (auto p = parse_key(item)) {
                out.push_back(ParsedElement{*p, {}, std::nullopt});  // nobody's: an orphan
            }
            continue;
        }
        const auto& el = item["elem"];
        auto p = parse_key(el.at("val"));
        if (!p) {
            continue;
        }
        ParsedElement pe{*p, {}, std::nullopt};
        if (el.contains("comment")) {
            pe.owner = parse_id(el["comment"].get<std::string>());
        }
        out.push_back(std::move(pe));
    }
}

}  // namespace

ParsedTable parse_table(const Json& output) {
    ParsedTable t;
    if (!output.is_object() || !output.contains("nftables")) {
        throw std::runtime_error("libnftables output has no \"nftables\" array");
    }
    for (const auto& item : output["nftables"]) {
        if (item.contains("table")) {
            t.present = true;
        } else if (item.contains("chain")) {
            t.chains.insert(item["chain"].at("name").get<std::string>());
        } else if (item.contains("limit")) {
            const auto& l = item["limit"];
            t.limits[l.at("name")] =
                LimitObject{l.at("name"), l.value("rate", std::uint64_t{0}) * unit(l, "rate_unit"),
                            l.value("burst", std::uint64_t{0}) * unit(l, "burst_unit")};
        } else if (item.contains("quota")) {
            const auto& q = item["quota"];
            t.quotas[q.at("name")] = {QuotaObject{q.at("name"), q.value("bytes", std::uint64_t{0})},
                                      q.value("used", std::uint64_t{0})};
        } else if (item.contains("map")) {
            const auto& m = item["map"];
            auto& list = t.maps[m.at("name").get<std::string>()];
            for (const auto& pair : m.value("elem", Json::array())) {
                Json key = pair.at(0);
                ParsedElement pe;
                if (key.is_object() && key.contains("elem")) {
                    const auto& el = key["elem"];
                    if (el.contains("comment")) {
                        pe.owner = parse_id(el["comment"].get<std::string>());
                    }
                    key = el.at("val");
                }
                auto prefix = parse_key(key);
                if (!prefix) {
                    continue;
                }
                pe.key = *prefix;
                const Json& v = pair.at(1);
                if (v.is_object() && v.contains("jump")) {
                    pe.value = v["jump"].at("target").get<std::string>();
                } else if (v.is_string()) {
                    pe.value = v.get<std::string>();
                }
                list.push_back(std::move(pe));
            }
        } else if (item.contains("set") && is_active_set(item["set"].value("name", ""))) {
            parse_owned_set(item["set"], t.maps[item["set"].at("name").get<std::string>()]);
        } else if (item.contains("set")) {
            const auto& s = item["set"];
            auto& list = t.allow_sets[s.at("name").get<std::string>()];
            for (const auto& el : s.value("elem", Json::array())) {
                const Json& key = el.is_object() && el.contains("elem") ? el["elem"].at("val") : el;
                if (auto p = parse_key(key)) {
                    list.push_back(*p);
                }
            }
        }
    }
    return t;
}

}  // namespace ctquota::enforce::nftjson
