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

}  // namespace

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
        t.kernel_quota_fresh = it->second.fresh;
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

PolicyEngine::Evaluated PolicyEngine::evaluate_one(const store::PolicySubscriber& s,
                                                   const core::Cycle& cycle,
                                                   store::EvaluationInputs& in, core::TimePoint now,
                                                   std::vector<store::PolicyDecision>& decisions) {
    const core::Plan& plan = plan_of(s);
    core::EvaluationInput input;
    input.plan = &plan;
    input.cycle = cycle;
    input.usage = in.usage;
    input.quota_override = in.quota_override;
    input.topups = std::move(in.topups);
    input.now = now;
    Evaluated out{s.id, core::evaluate(input), false};
    const core::Evaluation& e = out.e;
    ++metrics_.policy_evaluations;
    std::optional<store::SubscriberStateRecord> prev;
    if (auto st = states_.find(s.id); st != states_.end()) {
        prev = st->second;
    }
    Decision d = decide(s, e, cycle, prev, now);
    out.state_changed = d.state_changed;
    if (d.state_changed) {
        spdlog::info("subscriber {}: {} -> {} ({})", s.external_id, prev ? prev->state : "normal",
                     core::to_string(e.state.kind), e.reason);
    }
    if (d.record) {
        decisions.push_back(std::move(*d.record));
    }
    schedule(s.id, e.next_check);
    return out;
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
        std::vector<Evaluated> done;
        for (const auto& key : keys) {
            done.push_back(evaluate_one(subscribers_.at(key.id), cycles.at(key.id), inputs[key.id],
                                        now, decisions));
        }
        auto armed = lease_slices(done, cycles, now);  // throws: as below
        store_.record(decisions, outbox_);  // throws: nothing applied, the caller retries
        for (auto& d : decisions) {
            const auto id = d.state.subscriber_id;
            states_.insert_or_assign(id, std::move(d.state));
        }
        for (const auto& ev : done) {
            const auto it = armed_.find(ev.id);
            const bool was_armed = it != armed_.end();
            const std::uint64_t before = was_armed ? it->second.bytes : 0;
            auto& next = armed.at(ev.id);
            const bool fresh = next && next->fresh;
            const std::uint64_t after = next ? next->bytes : 0;
            const bool quota_changed = was_armed != next.has_value() || before != after;
            if (next) {
                armed_.insert_or_assign(ev.id, std::move(*next));
            } else {
                armed_.erase(ev.id);
            }
            if (ev.state_changed || quota_changed || fresh) {
                targets.push_back(target_of(subscribers_.at(ev.id), ev.e.state));
            }
        }
    }
    metrics_.leases_held = armed_.size();
    if (full_reconcile) {
        targets = reconcile_targets();
    }
    const auto changed = apply_to_kernel(targets, full_reconcile);
    for (const auto& t : targets) {  // the kernel counts from zero now
        if (auto it = armed_.find(t.id); it != armed_.end()) {
            it->second.fresh = false;
            settle_peak(t.id, it->second);
        }
    }
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
