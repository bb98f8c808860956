#pragma once
// The UsageRules the policy engine builds from the plans: each subscriber's
// period is its plan's cycle, free windows and zero-rated destinations make
// bytes uncounted. Subscribers without a plan (or with an unknown one) get
// the calendar month in UTC and count everything. Built once per change of
// plans or assignments; used by the accounting thread only (the free-window
// memo is not shared between threads).

#include <tsl/robin_map.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "core/plan.hpp"
#include "core/usage_rules.hpp"

namespace ctquota::core {

class PlanUsageRules final : public UsageRules {
  public:
    struct Assignment {
        std::string plan;
        TimePoint anchor{};  // when the subscriber started (EveryNDays cycles count from it)
    };

    PlanUsageRules(const std::unordered_map<std::string, Plan>& plans,
                   const std::unordered_map<SubscriberId, Assignment>& assignments);

    [[nodiscard]] Period period(SubscriberId subscriber, TimePoint t) const override;
    [[nodiscard]] UsageClass classify(SubscriberId subscriber, const IpAddress& remote,
                                      TimePoint t) const override;
    [[nodiscard]] bool counts_everything() const override { return counts_everything_; }

  private:
    struct Slot {
        std::uint32_t plan = 0;
        TimePoint anchor{};
    };
    struct FreeMemo {  // in_free_window for one whole minute
        std::int64_t minute = INT64_MIN;
        bool free = false;
    };

    [[nodiscard]] const Slot* slot_of(SubscriberId subscriber) const;
    [[nodiscard]] bool free_at(std::uint32_t plan, TimePoint t) const;

    std::vector<Plan> plans_;
    tsl::robin_map<SubscriberId, Slot> slots_;
    mutable std::vector<FreeMemo> free_memo_;
    bool counts_everything_ = true;
};

}  // namespace ctquota::core
