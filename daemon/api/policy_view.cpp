#include "api/policy_view.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/calendar.hpp"
#include "core/cycle.hpp"
#include "core/plan_json.hpp"

namespace ctquota::api {

std::optional<core::Plan> stored_plan(const std::string& name, const std::string& definition) {
    try {
        return core::plan_from_json(nlohmann::json::parse(definition), name);
    } catch (const std::exception& e) {
        spdlog::warn("plan '{}' in the database does not validate ({}); treated as no plan", name,
                     e.what());
        return std::nullopt;
    }
}

store::CycleSpan current_cycle(core::TimePoint created_at,
                               const std::optional<std::string>& plan_name,
                               const std::optional<std::string>& plan_definition,
                               core::TimePoint now) {
    if (plan_name && plan_definition) {
        if (const auto plan = stored_plan(*plan_name, *plan_definition)) {
            // The database stamps created_at after the request read its clock: a
            // subscriber made just now is inside its first cycle, not the one before.
            const auto c = core::cycle_at(plan->cycle, created_at, std::max(now, created_at));
            return {c.start, c.end};
        }
    }
    const auto start = core::month_start_utc(now);
    return {start, core::next_month_start_utc(start)};
}

store::CycleSpan cycle_on_date(core::TimePoint created_at,
                               const std::optional<std::string>& plan_name,
                               const std::optional<std::string>& plan_definition,
                               core::TimePoint day) {
    if (plan_name && plan_definition) {
        if (const auto plan = stored_plan(*plan_name, *plan_definition)) {
            const auto c = core::cycle_on_day(plan->cycle, created_at, day);
            return {c.start, c.end};
        }
    }
    const auto start = core::month_start_utc(day);
    return {start, core::next_month_start_utc(start)};
}

store::CycleOf cycle_finder(core::TimePoint now) {
    return [now](core::TimePoint created_at, const std::optional<std::string>& plan,
                 const std::optional<std::string>& definition) {
        return current_cycle(created_at, plan, definition, now);
    };
}

core::Evaluation evaluate_detail(const store::SubscriberDetail& d, core::TimePoint now) {
    std::optional<core::Plan> plan;
    if (d.subscriber.plan && d.plan_definition) {
        plan = stored_plan(*d.subscriber.plan, *d.plan_definition);
    }
    core::EvaluationInput in;
    in.plan = plan ? &*plan : nullptr;
    in.cycle = {d.span.start, d.span.end};
    const auto& u = d.cycle.usage;
    in.usage.up_bytes = u.up.bytes;
    in.usage.down_bytes = u.down.bytes;
    in.usage.free_up_bytes = d.uncounted.free_up_bytes;
    in.usage.free_down_bytes = d.uncounted.free_down_bytes;
    in.usage.zero_up_bytes = d.uncounted.zero_up_bytes;
    in.usage.zero_down_bytes = d.uncounted.zero_down_bytes;
    in.quota_override = d.quota_override;
    for (const auto& t : d.topups) {
        in.topups.push_back({t.bytes, t.created_at, t.expires_at});
    }
    in.now = now;
    return core::evaluate(in);
}

nlohmann::ordered_json state_json(const store::SubscriberDetail& d) {
    if (!d.state) {
        return {{"state", "normal"},
                {"since", core::iso8601_utc(d.subscriber.created_at)},
                {"reason", "no enforcement decision recorded yet"},
                {"down_bps", nullptr},
                {"up_bps", nullptr}};
    }
    const auto& s = *d.state;
    return {{"state", s.state},
            {"since", core::iso8601_utc(s.since)},
            {"reason", s.reason},
            {"down_bps", optional_number(s.down_bps)},
            {"up_bps", optional_number(s.up_bps)}};
}

nlohmann::ordered_json optional_number(const std::optional<std::uint64_t>& v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json();
}

}  // namespace ctquota::api
