#include "enforce/enforcer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "enforce/enforcer_impl.hpp"
#include "enforce/tc_programs.hpp"

namespace ctquota::enforce {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::microseconds since(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
}

void record(ReconcileReport& report, std::string message) {
    spdlog::error("enforce: {}", message);
    report.errors.push_back(std::move(message));
}

std::optional<std::uint32_t> classid_in(const SubscriberItems& items) {
    if (items.tc_class) {
        return items.tc_class->classid;
    }
    for (const auto& e : items.elements) {
        if (e.set.starts_with("throttle_")) {
            return throttle_class(e.value);
        }
    }
    return std::nullopt;
}

TcConfig tc_config(const EnforceConfig& cfg) {
    return TcConfig{cfg.subscriber_interface, cfg.shaper_interface, cfg.direct_queue_packets,
                    cfg.leaf_queue_packets};
}

}  // namespace

Enforcer::Impl::Impl(EnforceConfig c, std::shared_ptr<const TcPrograms> p)
    : cfg(std::move(c)), programs(std::move(p)) {
    if (cfg.subscriber_interface.empty()) {
        spdlog::warn(
            "enforce: [enforce] subscriber_interface is empty: no tc shaping; throttled "
            "subscribers are policed by nftables in both directions (drops, less smooth)");
        return;
    }
    if (!programs) {
        programs = std::make_shared<const TcPrograms>();
    }
    tc = std::make_unique<TcLink>(tc_config(cfg), programs);
}

void Enforcer::Impl::start() {
    if (started) {
        return;
    }
    const auto listing = nft.list_table(cfg.table);
    const bool keep = listing && nftjson::skeleton_in_place(*listing, cfg);
    if (auto err = nft.run(nftjson::Json{{"nftables", nftjson::skeleton(cfg, !keep)}});
        !err.empty()) {
        throw EnforceError("cannot create nftables table inet " + cfg.table + ": " + err);
    }
    if (tc) {
        tc->ensure_root();
    }
    started = true;
}

void Enforcer::Impl::adopt(const Loaded& loaded) {
    installed = loaded.items;
    used_classids.clear();
    for (const auto& [classid, rate] : loaded.classes) {
        used_classids.insert(classid);
    }
    for (const auto& [id, items] : installed) {
        if (auto c = classid_in(items)) {
            used_classids.insert(*c);
        }
    }
    allowed_installed = loaded.allowed;
    for (const auto& chain : loaded.table.chains) {  // a chain without sets still counts
        if (chain.starts_with("block_") && !allowed_installed.contains(chain.substr(6))) {
            allowed_installed[chain.substr(6)] = {};
        }
    }
    cache_valid = true;
}

// Subscriber classes are spread over the shards by subscriber id: creating
// a class costs the kernel a walk over its qdisc's classes (tc_bind_tclass).
// Minors go in steps of 16 (the low nibble names a band of the leaf queue),
// kClassesPerShard of them: each has a leaf queue handle of its own. A full
// shard passes the subscriber on to the next.
std::optional<std::uint32_t> Enforcer::Impl::allocate_classid(core::SubscriberId id) {
    constexpr std::uint16_t kLast = kClassesPerShard * kClassStride;
    const auto first = static_cast<std::uint32_t>(static_cast<std::uint64_t>(id) % kHtbShards);
    for (std::uint32_t k = 0; k < kHtbShards; ++k) {
        const auto shard = (first + k) % kHtbShards;
        const std::uint32_t major = (kHtbFirstShardMajor + shard) << 16;
        auto& next = next_minor[shard];
        for (unsigned tries = 0; tries < kClassesPerShard; ++tries) {
            next = next >= kLast ? kClassStride : static_cast<std::uint16_t>(next + kClassStride);
            if (!used_classids.contains(major | next)) {
                used_classids.insert(major | next);
                return major | next;
            }
        }
    }
    return std::nullopt;
}

ModelContext Enforcer::Impl::context() const {
    return ModelContext{tc != nullptr, cfg.arm_quota_below_bytes, &plans_with_chain};
}

SubscriberDelta Enforcer::Impl::plan_target(const SubscriberTarget& t, SubscriberItems& want) {
    static const SubscriberItems kNone;
    auto it = installed.find(t.id);
    const SubscriberItems& have = it == installed.end() ? kNone : it->second;
    const auto ctx = context();
    auto classid = classid_in(have);
    bool allocated = false;
    if (needs_tc_class(t, ctx) && !classid) {
        classid = allocate_classid(t.id);
        allocated = true;
        if (!classid) {
            spdlog::error("enforce: subscriber {}: no free HTB class id left", t.id);
        }
    }
    want = desired_items(t, ctx, classid);
    if (allocated && classid && !want.tc_class) {
        used_classids.erase(*classid);
    }
    return diff_items(t.id, have, want, t.kernel_quota_fresh);
}

nlohmann::json Enforcer::Impl::plan_updates(ReconcileReport& report) {
    std::vector<std::string> changed;
    plans_with_chain.clear();
    for (const auto& [plan, list] : allowed) {
        plans_with_chain.insert(plan);
        auto it = allowed_installed.find(plan);
        if (it == allowed_installed.end() || it->second != list) {
            changed.push_back(plan);
        }
    }
    const auto refused = create_plan_containers(changed, report);
    nlohmann::json contents = nlohmann::json::array();
    for (const auto& plan : changed) {
        if (refused.contains(plan)) {
            plans_with_chain.erase(plan);  // its blocks jump to the generic chain
        } else {
            nftjson::plan_contents(contents, cfg.table, plan, allowed.at(plan));
        }
    }
    return contents;
}

// All plans' containers in one transaction; when it is refused, each plan
// alone, so that one plan's failure costs only its own always-allowed list.
std::set<std::string> Enforcer::Impl::create_plan_containers(const std::vector<std::string>& plans,
                                                             ReconcileReport& report) {
    if (plans.empty()) {
        return {};
    }
    nlohmann::json all = nlohmann::json::array();
    for (const auto& plan : plans) {
        nftjson::plan_containers(all, cfg.table, plan);
    }
    ++report.nft_transactions;
    report.nft_commands += all.size();
    if (nft.run(nlohmann::json{{"nftables", all}}).empty()) {
        return {};
    }
    std::set<std::string> refused;
    for (const auto& plan : plans) {
        nlohmann::json one = nlohmann::json::array();
        nftjson::plan_containers(one, cfg.table, plan);
        ++report.nft_transactions;
        if (auto err = nft.run(nlohmann::json{{"nftables", one}}); !err.empty()) {
            record(report, "plan '" + plan + "': creating its always-allowed sets and chain: " +
                               err + "; its blocked subscribers use the generic block chain");
            refused.insert(plan);
        }
    }
    return refused;
}

Enforcer::Enforcer(EnforceConfig config, std::shared_ptr<const TcPrograms> programs)
    : config_(config), impl_(std::make_unique<Impl>(std::move(config), std::move(programs))) {}

Enforcer::~Enforcer() = default;

void Enforcer::set_allowed(std::map<std::string, std::vector<core::Prefix>> allowed_by_plan) {
    impl_->allowed.clear();
    for (auto& [plan, list] : allowed_by_plan) {
        auto normal = without_nested(std::move(list));
        if (!normal.empty()) {
            impl_->allowed[plan] = std::move(normal);
        }
    }
}

ReconcileReport Enforcer::apply(const std::vector<SubscriberTarget>& changes) {
    const auto t0 = Clock::now();
    ReconcileReport report;
    impl_->start();
    if (!impl_->cache_valid) {
        impl_->adopt(load_kernel(impl_->nft, impl_->tc.get(), config_.table));
    }
    const auto before = impl_->plan_updates(report);
    std::vector<SubscriberDelta> deltas;
    std::map<core::SubscriberId, SubscriberItems> wants;
    impl_->release_moved_prefixes(changes, deltas, wants);
    for (const auto& t : changes) {
        SubscriberItems want;
        auto d = impl_->plan_target(t, want);
        if (!d.empty()) {
            wants[t.id] = std::move(want);
            deltas.push_back(std::move(d));
        }
    }
    impl_->execute(deltas, wants, before, report);
    report.elapsed = since(t0);
    return report;
}

ReconcileReport Enforcer::reconcile(const std::vector<SubscriberTarget>& desired) {
    const auto t0 = Clock::now();
    ReconcileReport report;
    impl_->start();
    auto loaded = load_kernel(impl_->nft, impl_->tc.get(), config_.table);
    impl_->adopt(loaded);
    const auto before = impl_->plan_updates(report);
    std::vector<SubscriberDelta> deltas = loaded.orphans;
    std::map<core::SubscriberId, SubscriberItems> wants;
    std::set<core::SubscriberId> listed;
    for (const auto& t : desired) {
        listed.insert(t.id);
        SubscriberItems want;
        auto d = impl_->plan_target(t, want);
        if (!d.empty()) {
            wants[t.id] = std::move(want);
            deltas.push_back(std::move(d));
        }
    }
    for (const auto& [id, items] : loaded.items) {
        if (!listed.contains(id)) {
            wants[id] = {};
            deltas.push_back(diff_items(id, items, {}));
        }
    }
    impl_->execute(deltas, wants, before, report);
    // Plans no longer configured: their chains and sets go once nothing jumps there.
    nlohmann::json stale = nlohmann::json::array();
    for (const auto& [plan, list] : impl_->allowed_installed) {
        if (!impl_->allowed.contains(plan)) {
            nftjson::delete_plan(stale, config_.table, plan);
        }
    }
    if (!stale.empty()) {
        ++report.nft_transactions;
        report.nft_commands += stale.size();
        if (auto err = impl_->nft.run(nlohmann::json{{"nftables", stale}}); !err.empty()) {
            record(report, "deleting the chains of plans no longer configured: " + err);
        }
        impl_->cache_valid = false;
    }
    report.elapsed = since(t0);
    return report;
}

ReconcileReport Enforcer::remove(const std::vector<core::SubscriberId>& ids) {
    std::vector<SubscriberTarget> targets;
    for (auto id : ids) {
        SubscriberTarget t;
        t.id = id;
        targets.push_back(std::move(t));
    }
    return apply(targets);
}

KernelState Enforcer::read_back() {
    impl_->start();
    return to_kernel_state(load_kernel(impl_->nft, impl_->tc.get(), config_.table));
}

std::string Enforcer::damage() {
    if (!impl_->started) {
        return {};  // nothing built yet: the next change builds it
    }
    std::string found;
    auto note = [&found](const std::string& what) { found += (found.empty() ? "" : "; ") + what; };
    nlohmann::json listing = {{"nftables", nlohmann::json::array()}};
    for (const char* chain : {"forward", "block"}) {
        const auto one = impl_->nft.list_chain(config_.table, chain);
        if (!one) {
            note("nftables chain inet " + config_.table + " " + chain + " is gone");
            continue;
        }
        for (const auto& item : one->value("nftables", nlohmann::json::array())) {
            listing["nftables"].push_back(item);
        }
    }
    if (found.empty() && !nftjson::skeleton_in_place(listing, config_)) {
        note("the rules of table inet " + config_.table + " were changed");
    }
    if (impl_->tc) {
        if (auto tc = impl_->tc->root_damage(); !tc.empty()) {
            note(tc);
        }
    }
    return found;
}

void Enforcer::forget_kernel() {
    if (impl_->tc && !impl_->tc->root_damage().empty()) {
        // A new link learns the interface's current index. While the
        // interface is missing this throws before anything is forgotten, so
        // that damage() goes on reporting it and the caller tries again.
        impl_->tc = std::make_unique<TcLink>(tc_config(config_), impl_->programs);
    }
    impl_->started = false;
    impl_->cache_valid = false;
    impl_->installed.clear();
    impl_->used_classids.clear();
    impl_->allowed_installed.clear();
}

std::optional<std::uint64_t> Enforcer::quota_used(core::SubscriberId id) {
    const auto listed = impl_->nft.list_quota(config_.table, quota_name(id));
    if (!listed || !listed->contains("nftables")) {
        return std::nullopt;
    }
    for (const auto& item : listed->at("nftables")) {
        if (item.contains("quota")) {
            return item["quota"].value("used", std::uint64_t{0});
        }
    }
    return std::nullopt;
}

std::vector<Flowtable> Enforcer::flowtables() {
    return parse_flowtables(impl_->nft.text_command("list flowtables"));
}

void Enforcer::teardown() {
    impl_->nft.run(nlohmann::json{
        {"nftables", {{{"delete", {{"table", {{"family", "inet"}, {"name", config_.table}}}}}}}}});
    if (impl_->tc) {
        impl_->tc->remove_root();
    }
    impl_->started = false;
    impl_->cache_valid = false;
    impl_->installed.clear();
    impl_->used_classids.clear();
    impl_->allowed_installed.clear();
}

}  // namespace ctquota::enforce
