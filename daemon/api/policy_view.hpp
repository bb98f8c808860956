#pragma once
// The API's view of a subscriber's policy: its plan (parsed from the stored
// JSON), its current billing cycle, and core::evaluate over what the store
// read, so the numbers the API shows are the ones the daemon enforces.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/plan.hpp"
#include "core/plan_evaluation.hpp"
#include "store/subscriber_queries.hpp"

namespace ctquota::api {

// The stored plan definition as a Plan; nullopt (and a logged warning) when
// it no longer validates, which the API then treats like no plan.
std::optional<core::Plan> stored_plan(const std::string& name, const std::string& definition);

// The cycle containing `now` for a subscriber created at `created_at`: the
// plan's cycle, or the calendar month in UTC without a plan.
store::CycleSpan current_cycle(core::TimePoint created_at,
                               const std::optional<std::string>& plan_name,
                               const std::optional<std::string>& plan_definition,
                               core::TimePoint now);

// The cycle that a date (its midnight in UTC) names for such a subscriber: the
// one running at the end of that day in the plan's time zone (core::cycle_on_day),
// or the calendar month in UTC containing it without a plan.
store::CycleSpan cycle_on_date(core::TimePoint created_at,
                               const std::optional<std::string>& plan_name,
                               const std::optional<std::string>& plan_definition,
                               core::TimePoint day);

// A CycleOf for SubscriberQueries::find that uses current_cycle.
store::CycleOf cycle_finder(core::TimePoint now);

// core::evaluate of what find() read.
core::Evaluation evaluate_detail(const store::SubscriberDetail& d, core::TimePoint now);

// {"state", "since", "reason", "down_bps", "up_bps"}; no stored state: normal
// since `created_at`.
nlohmann::ordered_json state_json(const store::SubscriberDetail& d);

// null for nullopt.
nlohmann::ordered_json optional_number(const std::optional<std::uint64_t>& v);

}  // namespace ctquota::api
