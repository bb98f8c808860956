#pragma once
// enforce::Enforcer: makes the kernel carry each subscriber's desired state
// (normal / throttled / blocked, plus an optional kernel quota) in one
// nftables table `inet <table>` (libnftables, JSON, one transaction per
// batch) and in tc HTB classes on the subscriber-facing interface (netlink
// via libmnl, one batch per call). Reads the kernel back to reconcile.
// Never touches other nftables tables, never flushes the ruleset, never
// shells out to nft/tc.
//
// Error policy: a rejected nft transaction or tc message is retried once per
// subscriber in isolation so that the others still apply; what still fails
// is reported in ReconcileReport::errors (naming the subscriber and the
// operation) and counted, never thrown. Only an unusable kernel (no
// libnftables context, no netlink socket, table cannot be created) throws
// EnforceError.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/address.hpp"
#include "core/plan.hpp"
#include "core/plan_evaluation.hpp"
#include "core/subscriber_index.hpp"
#include "enforce/enforce_config.hpp"
#include "enforce/flowtables.hpp"

namespace ctquota::enforce {

class TcPrograms;

class EnforceError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct SubscriberTarget {  // desired kernel state of one subscriber
    core::SubscriberId id = 0;
    std::vector<core::Prefix> prefixes;  // its active bindings (v4 and v6)
    core::DesiredState state;            // Normal entries are simply absent from the kernel
    std::string plan;                    // picks the always-allowed destinations when blocked
    std::optional<std::uint64_t> kernel_quota_bytes;  // Normal/Throttled near a block tier
    // The quota's counter starts from zero (a new lease epoch: the object is
    // created again). Otherwise a changed kernel_quota_bytes is a new limit
    // for the object in place, and the bytes it counted stay counted.
    bool kernel_quota_fresh = false;
    core::CountedDirections counts = core::CountedDirections::Both;
};

// What the kernel carries for one subscriber, parsed back from nftables and tc.
struct KernelSubscriber {
    core::SubscriberId id = 0;
    std::vector<core::Prefix> prefixes;  // every prefix found in one of our maps
    core::StateKind kind = core::StateKind::Normal;
    core::Rate rate;          // Throttled: down from the HTB class (or nft limit), up from nft
    std::string block_chain;  // Blocked: "block" or "block_<plan>"
    std::optional<std::uint64_t> quota_bytes;  // armed kernel quota
    std::uint64_t quota_used_bytes = 0;        // consumed so far (the kernel's counter)
    std::optional<std::uint32_t> tc_classid;   // HTB leaf class <shard>:<minor>
    bool tc_leaf_queue = false;                // that class has its low-latency leaf queue
};

struct KernelState {
    bool table_present = false;
    std::map<core::SubscriberId, KernelSubscriber> subscribers;
    std::map<std::string, std::vector<core::Prefix>> allowed_by_plan;
    std::size_t tc_classes = 0;  // HTB leaf classes on the subscriber interface
};

struct ReconcileReport {
    std::size_t subscribers_changed = 0;
    std::size_t nft_commands = 0;
    std::size_t nft_transactions = 0;
    std::size_t tc_messages = 0;
    std::size_t conntrack_deleted = 0;
    std::vector<std::string>
        errors;  // "subscriber 42: set HTB class 2:2a rate …: Invalid argument"
    std::chrono::microseconds elapsed{0};
    [[nodiscard]] bool ok() const { return errors.empty(); }
};

class Enforcer {
  public:
    // `programs`: the shaping's eBPF programs, loaded before the caller gave
    // up CAP_BPF (tc_programs.hpp); without them the Enforcer loads its own
    // when a subscriber interface is configured.
    explicit Enforcer(EnforceConfig config, std::shared_ptr<const TcPrograms> programs = nullptr);
    ~Enforcer();
    Enforcer(const Enforcer&) = delete;
    Enforcer& operator=(const Enforcer&) = delete;

    // always_allowed per plan; installed with the next reconcile/apply.
    void set_allowed(std::map<std::string, std::vector<core::Prefix>> allowed_by_plan);
    // Full reconcile: read back, then make the kernel equal to `desired`
    // (entries not listed are removed); only the difference is changed.
    ReconcileReport reconcile(const std::vector<SubscriberTarget>& desired);
    // Incremental: only these subscribers (Normal = remove); one nft
    // transaction + one tc netlink batch. Trusts what it installed before.
    ReconcileReport apply(const std::vector<SubscriberTarget>& changes);
    ReconcileReport remove(const std::vector<core::SubscriberId>& ids);
    KernelState read_back();  // what the kernel has now, parsed
    // What one subscriber's kernel quota has counted (one object listed, no
    // set elements); nullopt when it has none. Throws EnforceError.
    std::optional<std::uint64_t> quota_used(core::SubscriberId id);
    // Cheap (two chain listings and a qdisc dump, no set elements): empty
    // while the table's skeleton and the HTB root are in place, else what
    // is missing (nft flush ruleset, the table deleted, the root qdisc
    // deleted, the subscriber interface created again).
    std::string damage();
    // Forgets what it knew of the kernel, so that the next reconcile()
    // rebuilds everything: table, skeleton, plan chains, the HTB tree on the
    // interface's current index, every subscriber's items. Throws
    // EnforceError while the subscriber interface does not exist.
    void forget_kernel();
    // Every flowtable in the ruleset (any table): their offloaded flows
    // bypass enforcement (enforce/flowtables.hpp).
    std::vector<Flowtable> flowtables();
    // Deletes the table and the HTB root qdisc (tests, uninstall).
    void teardown();

    [[nodiscard]] const EnforceConfig& config() const { return config_; }

    struct Impl;

  private:
    EnforceConfig config_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ctquota::enforce
