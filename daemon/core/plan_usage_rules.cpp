#include "core/plan_usage_rules.hpp"

#include <stdexcept>

#include "core/calendar.hpp"
#include "core/cycle.hpp"

namespace ctquota::core {

PlanUsageRules::PlanUsageRules(const std::unordered_map<std::string, Plan>& plans,
                               const std::unordered_map<SubscriberId, Assignment>& assignments) {
    std::unordered_map<std::string, std::uint32_t> index;
    for (const auto& [name, plan] : plans) {
        index.emplace(name, static_cast<std::uint32_t>(plans_.size()));
        plans_.push_back(plan);
        if (!plan.free_windows.empty() || !plan.zero_rated.empty()) {
            counts_everything_ = false;
        }
    }
    free_memo_.resize(plans_.size());
    slots_.reserve(assignments.size());
    for (const auto& [subscriber, a] : assignments) {
        if (auto it = index.find(a.plan); it != index.end()) {
            slots_.emplace(subscriber, Slot{it->second, a.anchor});
        }
    }
}

const PlanUsageRules::Slot* PlanUsageRules::slot_of(SubscriberId subscriber) const {
    auto it = slots_.find(subscriber);
    return it == slots_.end() ? nullptr : &it->second;
}

Period PlanUsageRules::period(SubscriberId subscriber, TimePoint t) const {
    if (const Slot* s = slot_of(subscriber)) {
        try {
            const Cycle c = cycle_at(plans_[s->plan].cycle, s->anchor, t);
            return Period{c.start, c.end};
        } catch (const std::invalid_argument&) {
            // A plan is validated when loaded; fall through to the calendar month.
        }
    }
    return Period{month_start_utc(t), next_month_start_utc(t)};
}

bool PlanUsageRules::free_at(std::uint32_t plan, TimePoint t) const {
    const auto minute = std::chrono::floor<std::chrono::minutes>(t).time_since_epoch().count();
    FreeMemo& memo = free_memo_[plan];
    if (memo.minute != minute) {
        memo.minute = minute;
        memo.free = in_free_window(plans_[plan], t);
    }
    return memo.free;
}

UsageClass PlanUsageRules::classify(SubscriberId subscriber, const IpAddress& remote,
                                    TimePoint t) const {
    const Slot* s = slot_of(subscriber);
    if (s == nullptr) {
        return UsageClass::Counted;
    }
    const Plan& plan = plans_[s->plan];
    if (!plan.free_windows.empty() && free_at(s->plan, t)) {
        return UsageClass::Free;
    }
    for (const auto& prefix : plan.zero_rated) {
        if (prefix.contains(remote)) {
            return UsageClass::ZeroRated;
        }
    }
    return UsageClass::Counted;
}

}  // namespace ctquota::core
