#include "core/plan_evaluation.hpp"

#include <algorithm>
#include <limits>

namespace ctquota::core {
namespace {

constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();

std::uint64_t sub_floor(std::uint64_t a, std::uint64_t b) {
    return a > b ? a - b : 0;
}

std::uint64_t add_sat(std::uint64_t a, std::uint64_t b) {
    std::uint64_t out = 0;
    return __builtin_add_overflow(a, b, &out) ? kMax : out;
}

// The bytes of one direction that count toward the quota.
std::uint64_t counted_direction(const Plan& plan, std::uint64_t all, std::uint64_t free_part,
                                std::uint64_t zero_part) {
    auto counted = all;
    if (!plan.free_windows.empty()) {
        counted = sub_floor(counted, free_part);
    }
    if (!plan.zero_rated.empty()) {
        counted = sub_floor(counted, zero_part);
    }
    return counted;
}

// floor(counted * 100 / allowance) without overflow; allowance > 0.
std::uint64_t used_percent(std::uint64_t counted, std::uint64_t allowance) {
    if (counted <= kMax / 100) {
        return counted * 100 / allowance;
    }
    return allowance >= 100 ? counted / (allowance / 100) : kMax;
}

std::string usage_text(std::uint64_t counted, std::uint64_t allowance) {
    if (allowance == 0) {
        return format_bytes(counted) + " used of a 0 B allowance";
    }
    return std::to_string(used_percent(counted, allowance)) + "% of " + format_bytes(allowance) +
           " used";
}

std::string tier_text(const Tier& tier) {
    const auto at = " (at " + std::to_string(tier.at_percent) + "%)";
    if (tier.action == Tier::Action::Block) {
        return "block tier" + at;
    }
    return "throttle tier" + at + ": " + format_bit_rate(tier.rate.down_bps) + " down, " +
           format_bit_rate(tier.rate.up_bps) + " up";
}

TimePoint next_check_at(const EvaluationInput& input) {
    auto next = input.cycle.end;
    for (const auto& t : input.topups) {
        for (const auto change : {t.created_at, t.expires_at}) {
            if (change > input.now && change < next) {
                next = change;
            }
        }
    }
    return next;
}

}  // namespace

std::string_view to_string(StateKind kind) {
    switch (kind) {
        case StateKind::Throttled:
            return "throttled";
        case StateKind::Blocked:
            return "blocked";
        case StateKind::Normal:
            break;
    }
    return "normal";
}

std::optional<StateKind> state_from_string(std::string_view text) {
    for (const auto kind : {StateKind::Normal, StateKind::Throttled, StateKind::Blocked}) {
        if (to_string(kind) == text) {
            return kind;
        }
    }
    return std::nullopt;
}

std::uint64_t counted_of(CountedDirections counts, std::uint64_t up, std::uint64_t down) {
    switch (counts) {
        case CountedDirections::Down:
            return down;
        case CountedDirections::Up:
            return up;
        case CountedDirections::Both:
            break;
    }
    return add_sat(down, up);
}

std::uint64_t counted_bytes(const Plan& plan, const CycleUsage& u) {
    const auto down = counted_direction(plan, u.down_bytes, u.free_down_bytes, u.zero_down_bytes);
    const auto up = counted_direction(plan, u.up_bytes, u.free_up_bytes, u.zero_up_bytes);
    return counted_of(plan.counts, up, down);
}

std::uint64_t percent_of(std::uint64_t allowance, unsigned percent) {
    // allowance = 100q + r: allowance * p / 100 = q*p + r*p/100 exactly.
    const auto q = allowance / 100;
    const auto r = allowance % 100;
    std::uint64_t whole = 0;
    if (__builtin_mul_overflow(q, std::uint64_t{percent}, &whole)) {
        return kMax;
    }
    return add_sat(whole, r * percent / 100);
}

std::uint64_t active_topup_bytes(const std::vector<TopUp>& topups, TimePoint now) {
    std::uint64_t sum = 0;
    for (const auto& t : topups) {
        if (t.created_at <= now && now < t.expires_at) {
            sum = add_sat(sum, t.bytes);
        }
    }
    return sum;
}

Evaluation evaluate(const EvaluationInput& input) {
    Evaluation ev;
    ev.next_check = input.cycle.end;
    if (input.plan == nullptr) {
        ev.counted_bytes = add_sat(input.usage.up_bytes, input.usage.down_bytes);
        ev.reason = "no plan: unlimited";
        return ev;
    }
    const Plan& plan = *input.plan;
    ev.counted_bytes = counted_bytes(plan, input.usage);
    if (!plan.quota_bytes) {
        ev.reason = "unlimited plan";
        return ev;
    }
    ev.next_check = next_check_at(input);
    const auto allowance = std::min(add_sat(input.quota_override.value_or(*plan.quota_bytes),
                                            active_topup_bytes(input.topups, input.now)),
                                    kMaxAllowanceBytes);
    const auto counted = ev.counted_bytes;
    ev.allowance_bytes = allowance;
    ev.remaining_bytes = sub_floor(allowance, counted);
    for (const auto w : plan.warn_percent) {
        if (percent_of(allowance, w) <= counted) {
            ev.warnings_reached.push_back(w);
        }
    }
    const Tier* applied = nullptr;
    for (const auto& tier : plan.tiers) {
        if (percent_of(allowance, tier.at_percent) <= counted) {
            applied = &tier;  // tiers ascend: the last one reached wins
        }
        if (tier.action == Tier::Action::Block && !ev.bytes_until_block) {
            ev.bytes_until_block = sub_floor(percent_of(allowance, tier.at_percent), counted);
        }
    }
    if (applied == nullptr) {
        ev.reason = "within allowance: " + usage_text(counted, allowance);
        return ev;
    }
    if (applied->action == Tier::Action::Block) {
        ev.state = DesiredState{StateKind::Blocked, Rate{}};
    } else {
        ev.state = DesiredState{StateKind::Throttled, applied->rate};
    }
    ev.reason = usage_text(counted, allowance) + ": " + tier_text(*applied);
    return ev;
}

}  // namespace ctquota::core
