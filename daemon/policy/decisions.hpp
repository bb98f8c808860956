#pragma once
// From one evaluation to what must be recorded: the subscriber's new state
// row and the events (state change, warning reached, new cycle). Pure: the
// engine feeds it what it read and writes what it returns.

#include <optional>

#include "core/plan_evaluation.hpp"
#include "store/policy_store.hpp"

namespace ctquota::policy {

struct Decision {
    std::optional<store::PolicyDecision> record;  // nullopt: nothing to write
    bool state_changed = false;                   // the kernel must change
};

// `previous` is the stored row, or nullopt (normal since the subscriber was created).
Decision decide(const store::PolicySubscriber& subscriber, const core::Evaluation& evaluation,
                const core::Cycle& cycle,
                const std::optional<store::SubscriberStateRecord>& previous, core::TimePoint now);

store::SubscriberStateRecord initial_state(const store::PolicySubscriber& subscriber);
core::DesiredState desired_of(const store::SubscriberStateRecord& state);

}  // namespace ctquota::policy
