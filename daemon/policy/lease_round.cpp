// PolicyEngine, part three: quota slices. Every subscriber whose kernel quota
// is armed holds a lease on part of its allowance (core/quota_lease.hpp); the
// round's leases are settled in one transaction (store/lease_store.hpp) and
// the kernel quota is armed with what this gateway was granted. With the
// database gone the round fails before anything is applied: the kernel keeps
// the slices it holds, and a slice used up stays a drop until a grant.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "policy/policy_engine.hpp"

namespace ctquota::policy {
namespace {

// Billing counts what the gateway delivered (drops/): a kernel quota holding
// exactly the bytes leased would stop delivery just short of them, the block
// tier would never be reached, and the subscriber would sit with every packet
// dropped but not blocked (its portal unreachable). With this much more the
// last packets cross the allowance (any packet up to this size; TCP
// retransmits smaller ones after a loss), the block follows at the next
// flush, and each gateway bills past its ceiling by at most this much.
constexpr std::uint64_t kCrossingSlack = 32 * 1024;

bool kernel_can_count(const core::Plan& plan) {
    // The kernel's quota counts every byte: exact only when the plan counts every byte.
    return plan.free_windows.empty() && plan.zero_rated.empty();
}

std::uint64_t add_sat(std::uint64_t a, std::uint64_t b) {
    return a > std::numeric_limits<std::uint64_t>::max() - b
               ? std::numeric_limits<std::uint64_t>::max()
               : a + b;
}

std::uint64_t kernel_bytes(std::uint64_t ceiling, std::uint64_t base) {
    return core::epoch_quota_bytes(ceiling, base, kCrossingSlack);
}

}  // namespace

bool PolicyEngine::leasable(const core::Plan& plan, const core::Evaluation& e) const {
    const std::uint64_t below = enforcer_ ? enforcer_->config().arm_quota_below_bytes : 0;
    return enforcer_ && kernel_can_count(plan) && e.state.kind != core::StateKind::Blocked &&
           e.bytes_until_block && (below == 0 || *e.bytes_until_block < below);
}

std::unordered_map<core::SubscriberId, std::optional<PolicyEngine::Armed>>
PolicyEngine::lease_slices(const std::vector<Evaluated>& done,
                           const std::unordered_map<core::SubscriberId, core::Cycle>& cycles,
                           core::TimePoint now) {
    std::unordered_map<core::SubscriberId, std::optional<Armed>> out;
    std::vector<store::LeaseAsk> asks;
    for (const auto& ev : done) {
        out[ev.id] = std::nullopt;
        const auto& plan = plan_of(subscribers_.at(ev.id));
        if (!leasable(plan, ev.e)) {
            continue;
        }
        store::LeaseAsk ask;
        ask.id = ev.id;
        ask.cycle_start = cycles.at(ev.id).start;
        ask.counts = plan.counts;
        ask.block_limit = add_sat(ev.e.counted_bytes, *ev.e.bytes_until_block);
        if (auto it = armed_.find(ev.id); it != armed_.end()) {
            ask.rate_bytes_per_second = it->second.rate;
            if (it->second.cycle_start == ask.cycle_start) {
                ask.counted_at_last_settle = it->second.counted;
                ask.counted_at_last_grant = it->second.counted_at_grant;
                ask.refused_before = it->second.denied;
                ask.stalled_lately = now < it->second.stalled_until;
            }
        }
        asks.push_back(ask);
    }
    if (asks.empty()) {
        return out;
    }
    if (!config_.leases) {  // all that is left, armed once per allowance (counted from zero)
        for (const auto& ev : done) {
            if (!out.count(ev.id) || std::none_of(asks.begin(), asks.end(),
                                                  [&](const auto& a) { return a.id == ev.id; })) {
                continue;
            }
            if (auto it = armed_.find(ev.id);
                it != armed_.end() && it->second.allowance == ev.e.allowance_bytes) {
                out[ev.id] = it->second;
                continue;
            }
            Armed a;
            a.allowance = ev.e.allowance_bytes;
            a.bytes = add_sat(*ev.e.bytes_until_block, kCrossingSlack);
            out[ev.id] = a;
        }
        return out;
    }
    const auto flushed = [&] {  // before the settle reads the counted bytes
        std::lock_guard lock(mu_);
        return flush_ok_since_;
    }();
    const auto batch = leases_.settle(gateway_id_, asks, lease_settings_, now);
    if (batch.expired > 0) {
        metrics_.leases_expired += batch.expired;
        spdlog::info("leases: {} expired slices deleted (a gateway stopped renewing)",
                     batch.expired);
    }
    for (std::size_t i = 0; i < asks.size(); ++i) {
        const auto& o = batch.outcomes.at(i);
        auto a = next_armed(o, asks[i].cycle_start, now);
        count_lease(o, a, subscribers_.at(o.id).external_id);
        const bool restarted = settle_epoch(o.id, a, now, flushed);
        // Stopped (denied, given back, short of its ceiling, a new epoch just
        // started): no traffic, no flush to wake the engine, so look again
        // when a lease elsewhere may have expired or billing has caught up.
        if (o.decision.action == core::LeaseAction::Denied ||
            o.decision.action == core::LeaseAction::Lapse || a.ceiling > a.counted || restarted ||
            may_be_short(a)) {
            check_soon(o.id, now + lease_settings_.slice_time / 2);
        }
        out[o.id] = a;
    }
    return out;
}

PolicyEngine::Armed PolicyEngine::next_armed(const store::LeaseOutcome& o,
                                             core::TimePoint cycle_start,
                                             core::TimePoint now) const {
    Armed a;
    const auto it = armed_.find(o.id);
    if (it != armed_.end() && it->second.cycle_start == cycle_start) {
        a = it->second;
        // The rate between two flushes that brought bytes: the first growth
        // after a quiet spell says nothing about it (no rate yet: the slice
        // is a share of what is left, core::slice_bytes).
        if (o.own_counted > a.counted && now > a.counted_at) {
            const double seconds = std::chrono::duration<double>(now - a.counted_at).count();
            const auto recent = static_cast<std::uint64_t>(
                static_cast<double>(o.own_counted - a.counted) / seconds);
            if (a.growing) {
                a.rate = a.rate == 0 ? recent : (a.rate + recent) / 2;
            }
            a.growing = true;
            a.counted_at = now;
        } else if (o.own_counted == a.counted && a.growing &&
                   now - a.counted_at > 2 * lease_settings_.slice_time) {
            a.growing = false;  // quiet: the next growth starts a new estimate
            a.rate = 0;
        }
        a.ceiling = core::armed_ceiling(a.ceiling, o.decision);
    } else {  // a new epoch: the kernel counter starts from zero at this gateway's count
        a.cycle_start = cycle_start;
        a.base = o.own_counted;
        a.counted_at = now;
        a.fresh = true;
        a.ceiling = o.decision.ceiling;
    }
    a.counted = o.own_counted;
    if (o.decision.action != core::LeaseAction::Keep &&
        o.decision.action != core::LeaseAction::Idle) {
        a.counted_at_grant = o.own_counted;
    }
    const auto before = a.bytes;
    a.bytes = kernel_bytes(a.ceiling, a.base);
    a.peak = a.fresh ? a.bytes : std::max(a.peak, a.bytes);
    if (a.bytes != before) {
        a.used_up_seen.reset();
    }
    if (a.bytes > before) {
        a.raised_at = now;
    }
    return a;
}

void PolicyEngine::count_lease(const store::LeaseOutcome& o, Armed& a, const std::string& who) {
    using core::LeaseAction;
    const auto& d = o.decision;
    const bool was_denied = a.denied;
    a.denied = d.action == LeaseAction::Denied;
    switch (d.action) {
        case LeaseAction::Keep:
        case LeaseAction::Idle:
            return;
        case LeaseAction::Grant:
            ++metrics_.leases_granted;
            break;
        case LeaseAction::Renew:
            ++metrics_.leases_renewed;
            break;
        case LeaseAction::Denied:
            ++metrics_.leases_denied;
            break;
        case LeaseAction::Lapse:
            ++metrics_.leases_lapsed;
            break;
    }
    if (a.denied && !was_denied) {
        spdlog::info("subscriber {}: no more quota to lease here (counted {} B, ceiling {} B)", who,
                     o.own_counted, d.ceiling);
    } else {
        spdlog::debug("subscriber {}: lease {}: ceiling {} B (counted {} B, {} B/s), kernel {} B",
                      who, core::to_string(d.action), d.ceiling, o.own_counted, a.rate, a.bytes);
    }
}

bool PolicyEngine::settle_epoch(core::SubscriberId id, Armed& a, core::TimePoint now,
                                std::chrono::steady_clock::time_point flushed) {
    const auto it = armed_.find(id);
    if (a.fresh || it == armed_.end() || it->second.fresh) {
        return false;  // a new epoch anyway
    }
    try {
        if (a.bytes > it->second.bytes) {
            if (exhausted(id, it->second.bytes)) {
                raise_exhausted(id, a, it->second.peak, now);
            }
            return false;
        }
        return restart_short_epoch(id, a, now, flushed);
    } catch (const enforce::EnforceError& e) {
        spdlog::warn("leases: cannot read subscriber {}'s kernel quota: {}", id, e.what());
        return false;
    }
}

bool PolicyEngine::exhausted(core::SubscriberId id, std::uint64_t limit) {
    const auto used = enforcer_->quota_used(id);  // capped at the limit by the kernel
    return used && *used >= limit;
}

// Nothing passes a used-up quota, so this epoch billed at most the highest
// limit it had (a lower one, e.g. a lease given back, may come after more
// passed): the next one passes at most what the ceiling grew by past that.
// Short of the ceiling after all, a quiet spell restarts it from billing.
void PolicyEngine::raise_exhausted(core::SubscriberId id, Armed& a, std::uint64_t peak,
                                   core::TimePoint now) {
    a.base = add_sat(a.base, peak);
    a.bytes = kernel_bytes(a.ceiling, a.base);
    a.peak = a.bytes;
    a.fresh = true;
    a.stalled_until = now + lease_settings_.ttl;
    a.used_up_seen.reset();
    ++metrics_.lease_epochs;
    spdlog::debug("subscriber {}: kernel quota used up before its raise: a new one of {} B", id,
                  a.bytes);
}

// Billing may still grow to the ceiling plus the slack, and this epoch saw
// traffic or started past billing: its kernel quota may have run out short.
bool PolicyEngine::may_be_short(const Armed& a) {
    return a.counted != a.base && a.counted < add_sat(a.ceiling, kCrossingSlack);
}

// Only once a flush that began half a slice time (at least a poll + flush
// interval, README) after the quota was first seen used up at its present
// limit has been stored: nothing passes it meanwhile, so billing has all that
// this epoch delivered. Without this a gateway whose quota ran out short
// would pass nothing, show no traffic, ask for nothing.
bool PolicyEngine::restart_short_epoch(core::SubscriberId id, Armed& a, core::TimePoint now,
                                       std::chrono::steady_clock::time_point flushed) {
    if (!may_be_short(a) ||
        now - std::max(a.counted_at, a.raised_at) < lease_settings_.slice_time / 2) {
        return false;  // or traffic still flows: not worth a look at the kernel yet
    }
    if (!exhausted(id, a.bytes)) {
        a.used_up_seen.reset();
        return false;
    }
    if (!a.used_up_seen) {
        a.used_up_seen = std::chrono::steady_clock::now();  // looked at again (check_soon)
    }
    if (flushed < *a.used_up_seen + lease_settings_.slice_time / 2) {
        return false;
    }
    a.used_up_seen.reset();
    a.base = a.counted;
    a.bytes = kernel_bytes(a.ceiling, a.base);
    a.peak = a.bytes;
    a.fresh = true;
    a.raised_at = now;
    a.stalled_until = now + lease_settings_.ttl;
    ++metrics_.lease_epochs;
    spdlog::info(
        "subscriber {}: kernel quota used up with {} B counted of a {} B ceiling (it counted "
        "packets dropped after it, or its epoch started past billing); a new one of {} B from "
        "what billing counted",
        id, a.counted, a.ceiling, a.bytes);
    return true;
}

void PolicyEngine::settle_peak(core::SubscriberId id, Armed& a) {
    if (!config_.leases || a.peak <= a.bytes) {
        return;
    }
    try {
        if (!exhausted(id, a.bytes)) {  // what passed so far is less than the limit
            a.peak = a.bytes;
        }
    } catch (const enforce::EnforceError& e) {
        spdlog::warn("leases: cannot read subscriber {}'s kernel quota: {}", id, e.what());
    }
}

void PolicyEngine::check_soon(core::SubscriberId id, core::TimePoint when) {
    if (auto it = check_of_.find(id); it == check_of_.end() || when < it->second) {
        schedule(id, when);  // its evaluation schedules its next check again
    }
}

void PolicyEngine::rebase_slices() {
    for (auto& [id, a] : armed_) {
        a.base = a.counted;
        a.bytes = kernel_bytes(a.ceiling, a.base);
        a.peak = a.bytes;
        a.fresh = true;
    }
}

}  // namespace ctquota::policy
