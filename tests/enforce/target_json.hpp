#pragma once
// JSON <-> enforce values for the enforcement tests' driver and benchmark.

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "enforce/enforcer.hpp"
#include "enforce/kernel_model.hpp"

namespace ctquota::enforce::testing {

inline core::Prefix prefix_of(const std::string& text) {
    auto p = core::Prefix::parse(text);
    if (!p) {
        throw std::invalid_argument("bad prefix " + text);
    }
    return *p;
}

// {"id":1,"prefixes":["100.64.1.1"],"state":"throttled","down_bps":8000000,"up_bps":0,
//  "plan":"p","quota":123,"counts":"both|down|up"}
inline SubscriberTarget target_from_json(const nlohmann::json& j) {
    SubscriberTarget t;
    t.id = j.at("id").get<core::SubscriberId>();
    for (const auto& p : j.value("prefixes", nlohmann::json::array())) {
        t.prefixes.push_back(prefix_of(p.get<std::string>()));
    }
    const auto state = j.value("state", std::string("normal"));
    t.state.kind = state == "blocked"     ? core::StateKind::Blocked
                   : state == "throttled" ? core::StateKind::Throttled
                                          : core::StateKind::Normal;
    t.state.rate.down_bps = j.value("down_bps", std::uint64_t{0});
    t.state.rate.up_bps = j.value("up_bps", std::uint64_t{0});
    t.plan = j.value("plan", std::string());
    if (j.contains("quota") && !j["quota"].is_null()) {
        t.kernel_quota_bytes = j["quota"].get<std::uint64_t>();
    }
    const auto counts = j.value("counts", std::string("both"));
    t.counts = counts == "down" ? core::CountedDirections::Down
               : counts == "up" ? core::CountedDirections::Up
                                : core::CountedDirections::Both;
    return t;
}

inline nlohmann::json to_json(const KernelState& s) {
    nlohmann::json subs = nlohmann::json::object();
    for (const auto& [id, k] : s.subscribers) {
        nlohmann::json prefixes = nlohmann::json::array();
        for (const auto& p : k.prefixes) {
            prefixes.push_back(p.to_string());
        }
        nlohmann::json j = {
            {"prefixes", prefixes},         {"state", std::string(core::to_string(k.kind))},
            {"down_bps", k.rate.down_bps},  {"up_bps", k.rate.up_bps},
            {"block_chain", k.block_chain}, {"quota_used", k.quota_used_bytes}};
        j["quota"] = k.quota_bytes ? nlohmann::json(*k.quota_bytes) : nlohmann::json();
        j["tc_class"] =
            k.tc_classid ? nlohmann::json(classid_text(*k.tc_classid)) : nlohmann::json();
        j["tc_leaf_queue"] = k.tc_leaf_queue;
        subs[std::to_string(id)] = j;
    }
    nlohmann::json allowed = nlohmann::json::object();
    for (const auto& [plan, list] : s.allowed_by_plan) {
        for (const auto& p : list) {
            allowed[plan].push_back(p.to_string());
        }
    }
    return {{"table_present", s.table_present},
            {"subscribers", subs},
            {"allowed", allowed},
            {"tc_classes", s.tc_classes}};
}

inline nlohmann::json to_json(const ReconcileReport& r) {
    return {{"changed", r.subscribers_changed},         {"nft_commands", r.nft_commands},
            {"nft_transactions", r.nft_transactions},   {"tc_messages", r.tc_messages},
            {"conntrack_deleted", r.conntrack_deleted}, {"errors", r.errors},
            {"elapsed_us", r.elapsed.count()}};
}

}  // namespace ctquota::enforce::testing
