// PolicyEngine, part two: evaluation of a batch of subscribers, recording the
// decisions, and the hand-off to the kernel.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <span>

#include "core/cycle.hpp"
#include "policy/decisions.hpp"
#include "policy/policy_engine.hpp"

namespace ctquota::policy {
namespace {

constexpr std::size_t kChunk = 5000;

// Billing counts what the gateway delivered (drops/): a kernel quota holding
// exactly the bytes left would stop delivery just short of the allowance,
// the block tier would never be reached, and the subscriber would sit with
// every packet dropped but not blocked (its portal unreachable). With this
// much more the last packets cross the allowance (any packet up to this
// size; TCP retransmits smaller ones after a loss), the block follows at the
// next flush, and billing passes the allowance by at most this much.
constexpr std::uint64_t kCrossingSlack = 32 * 1024;

bool kernel_can_count(const core::Plan& plan) {
    // The kernel's quota counts every byte: exact only when the plan counts every byte.
    return plan.free_windows.empty() && plan.zero_rated.empty();
}

}  // namespace

std::optional<std::uint64_t> PolicyEngine::arm(core::SubscriberId id, const core::Plan& plan,
                                               const core::Evaluation& e) {
    const std::uint64_t below = enforcer_ ? enforcer_->config().arm_quota_below_bytes : 0;
    if (!enforcer_ || !kernel_can_count(plan) || e.state.kind == core::StateKind::Blocked ||
        !e.bytes_until_block || (below > 0 && *e.bytes_until_block >= below)) {
        armed_.erase(id);
        return std::nullopt;
    }
    // Armed once per allowance: the kernel counts from the moment it was armed,
    // so re-arming with every flush would forget what it counted meanwhile.
    if (auto it = armed_.find(id);
        it != armed_.end() && it->second.allowance == e.allowance_bytes) {
        return it->second.bytes;
    }
    const std::uint64_t left = *e.bytes_until_block;
    const std::uint64_t bytes = left > UINT64_MAX - kCrossingSlack ? left : left + kCrossingSlack;
    armed_[id] = Armed{e.allowance_bytes, bytes};
    return bytes;
}

enforce::SubscriberTarget PolicyEngine::target_of(const store::PolicySubscriber& s,
                                                  const core::DesiredState& state) {
    enforce::SubscriberTarget t;
    t.id = s.id;
    t.prefixes = s.prefixes;
    t.state = state;
    t.plan = s.plan;
    t.counts = plan_of(s).counts;
    if (auto it = armed_.find(s.id); it != armed_.end()) {
        t.kernel_quota_bytes = it->second.bytes;
    }
    return t;
}

std::vector<store::CycleKey> PolicyEngine::current_cycles(
    std::span<const core::SubscriberId> ids, core::TimePoint now,
    std::unordered_map<core::SubscriberId, core::Cycle>& cycles) const {
    std::vector<store::CycleKey> keys;
    for (const auto id : ids) {
        auto it = subscribers_.find(id);
        if (it == subscribers_.end()) {
            continue;
        }
        const auto cycle = core::cycle_at(plan_of(it->second).cycle, it->second.created_at, now);
        cycles.emplace(id, cycle);
        keys.push_back(store::CycleKey{id, cycle.start});
    }
    return keys;
}

void PolicyEngine::evaluate_one(const store::PolicySubscriber& s, const core::Cycle& cycle,
                                store::EvaluationInputs& in, core::TimePoint now,
                                std::vector<store::PolicyDecision>& decisions,
                                std::vector<enforce::SubscriberTarget>& targets) {
    const core::Plan& plan = plan_of(s);
    core::EvaluationInput input;
    input.plan = &plan;
    input.cycle = cycle;
    input.usage = in.usage;
    input.quota_override = in.quota_override;
    input.topups = std::move(in.topups);
    input.now = now;
    const core::Evaluation e = core::evaluate(input);
    ++metrics_.policy_evaluations;
    std::optional<store::SubscriberStateRecord> prev;
    if (auto st = states_.find(s.id); st != states_.end()) {
        prev = st->second;
    }
    Decision d = decide(s, e, cycle, prev, now);
    const auto armed_before = armed_.count(s.id) ? std::optional(armed_[s.id].bytes) : std::nullopt;
    const auto armed_now = arm(s.id, plan, e);
    if (d.state_changed || armed_before != armed_now) {
        targets.push_back(target_of(s, e.state));
    }
    if (d.state_changed) {
        spdlog::info("subscriber {}: {} -> {} ({})", s.external_id, prev ? prev->state : "normal",
                     core::to_string(e.state.kind), e.reason);
    }
    if (d.record) {
        decisions.push_back(std::move(*d.record));
    }
    schedule(s.id, e.next_check);
}

// Everybody who is not plainly normal: what a full read-back must find in the kernel.
std::vector<enforce::SubscriberTarget> PolicyEngine::reconcile_targets() {
    std::vector<enforce::SubscriberTarget> targets;
    for (const auto& [id, s] : subscribers_) {
        auto st = states_.find(id);
        const auto desired = st == states_.end() ? core::DesiredState{} : desired_of(st->second);
        if (desired.kind != core::StateKind::Normal || armed_.count(id) != 0) {
            targets.push_back(target_of(s, desired));
        }
    }
    return targets;
}

std::size_t PolicyEngine::evaluate(const std::vector<core::SubscriberId>& ids,
                                   bool full_reconcile) {
    const core::TimePoint now = clock_.now();
    std::vector<enforce::SubscriberTarget> targets;
    for (std::size_t begin = 0; begin < ids.size(); begin += kChunk) {
        const std::span chunk(ids.data() + begin, std::min(kChunk, ids.size() - begin));
        std::unordered_map<core::SubscriberId, core::Cycle> cycles;
        const auto keys = current_cycles(chunk, now, cycles);
        auto inputs = store_.inputs(keys, now);
        std::vector<store::PolicyDecision> decisions;
        for (const auto& key : keys) {
            evaluate_one(subscribers_.at(key.id), cycles.at(key.id), inputs[key.id], now, decisions,
                         targets);
        }
        store_.record(decisions, outbox_);  // throws: nothing applied, the caller retries
        for (auto& d : decisions) {
            const auto id = d.state.subscriber_id;
            states_.insert_or_assign(id, std::move(d.state));
        }
    }
    if (full_reconcile) {
        targets = reconcile_targets();
    }
    const auto changed = apply_to_kernel(targets, full_reconcile);
    publish_counts();
    return changed;
}

std::size_t PolicyEngine::apply_to_kernel(const std::vector<enforce::SubscriberTarget>& targets,
                                          bool full) {
    if (!enforcer_ || (!full && targets.empty())) {
        return 0;
    }
    if (full) {
        check_flowtables();
    }
    const auto report = full ? enforcer_->reconcile(targets) : enforcer_->apply(targets);
    metrics_.enforcement_changes += report.subscribers_changed;
    metrics_.enforcement_errors += report.errors.size();
    for (const auto& err : report.errors) {
        spdlog::error("enforcement: {}", err);
    }
    if (report.subscribers_changed > 0 || full) {
        spdlog::info(
            "enforcement {}: {} subscribers changed, {} nft commands, {} tc messages, "
            "{} conntrack entries deleted, {} us",
            full ? "reconcile" : "apply", report.subscribers_changed, report.nft_commands,
            report.tc_messages, report.conntrack_deleted, report.elapsed.count());
    }
    return report.subscribers_changed;
}

void PolicyEngine::check_flowtables() {
    std::vector<enforce::Flowtable> found;
    try {
        found = enforcer_->flowtables();
    } catch (const enforce::EnforceError& e) {
        spdlog::warn("enforce: cannot list the flowtables: {}", e.what());
        return;
    }
    metrics_.flowtables = found.size();
    metrics_.flowtables_uncounted = static_cast<std::uint64_t>(
        std::count_if(found.begin(), found.end(), [](const auto& f) { return !f.counter; }));
    if (found == flowtables_) {
        return;  // said already
    }
    for (const auto& ft : found) {
        spdlog::warn("enforce: {} (README: Flowtable offload)", enforce::describe(ft));
    }
    if (found.empty() && !flowtables_.empty()) {
        spdlog::info("enforce: no flowtable in the ruleset any more");
    }
    flowtables_ = std::move(found);
}

void PolicyEngine::publish_counts() {
    std::uint64_t throttled = 0;
    std::uint64_t blocked = 0;
    for (const auto& [id, s] : states_) {
        if (subscribers_.count(id) == 0) {
            continue;
        }
        throttled += s.state == "throttled";
        blocked += s.state == "blocked";
    }
    metrics_.subscribers_throttled = throttled;
    metrics_.subscribers_blocked = blocked;
}

}  // namespace ctquota::policy
