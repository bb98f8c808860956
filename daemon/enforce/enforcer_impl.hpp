#pragma once
// Enforcer internals shared by enforcer.cpp (start-up, planning), execute.cpp
// (applying changes) and readback.cpp (parsing the kernel into per-subscriber
// items). Not a public header.

#include <array>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "enforce/enforcer.hpp"
#include "enforce/kernel_model.hpp"
#include "enforce/nft_json.hpp"
#include "enforce/nft_session.hpp"
#include "enforce/tc_netlink.hpp"

namespace ctquota::enforce {

using PlanPrefixes = std::map<std::string, std::vector<core::Prefix>>;

// The kernel, read back and grouped by owner.
struct Loaded {
    nftjson::ParsedTable table;
    std::map<std::uint32_t, std::uint64_t> classes;  // HTB leaf classid -> rate bit/s
    std::set<std::uint32_t> leaf_queues;             // leaf classids with our tbf under them
    std::map<core::SubscriberId, SubscriberItems> items;
    std::vector<SubscriberDelta> orphans;  // items no subscriber owns: to delete
    PlanPrefixes allowed;                  // allow sets found, per plan
};

Loaded load_kernel(NftSession& nft, TcLink* tc, const std::string& table);
KernelState to_kernel_state(const Loaded& loaded);
std::string describe(const SubscriberDelta& d);

struct Enforcer::Impl {
    EnforceConfig cfg;
    std::shared_ptr<const TcPrograms> programs;  // with a subscriber interface
    NftSession nft;
    std::unique_ptr<TcLink> tc;
    bool started = false;
    bool cache_valid = false;
    std::map<core::SubscriberId, SubscriberItems> installed;
    std::set<std::uint32_t> used_classids;
    std::array<std::uint16_t, kHtbShards> next_minor{};
    PlanPrefixes allowed;            // desired, normalised, non-empty lists only
    PlanPrefixes allowed_installed;  // what the kernel has (as far as we know)
    std::set<std::string> plans_with_chain;

    Impl(EnforceConfig c, std::shared_ptr<const TcPrograms> p);
    void start();
    void adopt(const Loaded& loaded);
    std::optional<std::uint32_t> allocate_classid(core::SubscriberId id);
    ModelContext context() const;
    SubscriberDelta plan_target(const SubscriberTarget& t, SubscriberItems& want);
    void release_moved_prefixes(const std::vector<SubscriberTarget>& changes,
                                std::vector<SubscriberDelta>& deltas,
                                std::map<core::SubscriberId, SubscriberItems>& wants);
    // Plan chains/sets that differ from `allowed`: containers run now (own
    // transaction), contents returned for the main transaction.
    nlohmann::json plan_updates(ReconcileReport& report);
    // Plans whose containers the kernel refused: left out of plans_with_chain.
    std::set<std::string> create_plan_containers(const std::vector<std::string>& plans,
                                                 ReconcileReport& report);
    // `set` as the kernel will hold it: subscribers in `changed` as in
    // `wants`, the others as installed.
    std::vector<std::pair<core::SubscriberId, Element>> contents_after(
        const std::string& set, const std::set<core::SubscriberId>& changed,
        const std::map<core::SubscriberId, SubscriberItems>& wants) const;
    void execute(std::vector<SubscriberDelta>& deltas,
                 std::map<core::SubscriberId, SubscriberItems>& wants, const nlohmann::json& before,
                 ReconcileReport& report);
    // The steps of execute(), in its order (execute.cpp).
    std::set<core::SubscriberId> set_classes(const std::vector<SubscriberDelta>& deltas,
                                             ReconcileReport& report);
    // `committed`: subscribers changed by an earlier transaction of this
    // change (bisect), whose elements a refilled map must keep.
    nftjson::Batch build_batch(std::span<const SubscriberDelta> deltas,
                               const std::map<core::SubscriberId, SubscriberItems>& wants,
                               const std::set<core::SubscriberId>& committed) const;
    std::set<core::SubscriberId> run_nft(const std::vector<SubscriberDelta>& deltas,
                                         const std::map<core::SubscriberId, SubscriberItems>& wants,
                                         const nlohmann::json& before, ReconcileReport& report);
    // After a rejected transaction: halves, recursively, until each refused
    // change stands alone (k bad of n cost O(k log n) transactions).
    std::set<core::SubscriberId> bisect(std::span<const SubscriberDelta> deltas,
                                        const std::map<core::SubscriberId, SubscriberItems>& wants,
                                        std::set<core::SubscriberId>& committed,
                                        ReconcileReport& report);
    std::set<core::SubscriberId> try_or_bisect(
        std::span<const SubscriberDelta> deltas,
        const std::map<core::SubscriberId, SubscriberItems>& wants,
        std::set<core::SubscriberId>& committed, ReconcileReport& report);
    void delete_classes(const std::vector<SubscriberDelta>& deltas,
                        const std::set<core::SubscriberId>& nft_failed, ReconcileReport& report);
    void flush_blocked(const std::vector<SubscriberDelta>& deltas,
                       const std::set<core::SubscriberId>& nft_failed, ReconcileReport& report);
    void remember_installed(const std::vector<SubscriberDelta>& deltas,
                            std::map<core::SubscriberId, SubscriberItems>& wants,
                            const nlohmann::json& before,
                            const std::set<core::SubscriberId>& failed,
                            const std::set<core::SubscriberId>& nft_failed);
};

}  // namespace ctquota::enforce
