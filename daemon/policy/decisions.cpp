#include "policy/decisions.hpp"

#include <nlohmann/json.hpp>

#include "core/calendar.hpp"

namespace ctquota::policy {
namespace {

store::NewEvent event(const store::PolicySubscriber& s, const core::Evaluation& e,
                      core::TimePoint now, std::string kind, std::string reason) {
    store::NewEvent ev;
    ev.subscriber_id = s.id;
    ev.at = now;
    ev.kind = std::move(kind);
    ev.reason = std::move(reason);
    ev.counted_bytes = e.counted_bytes;
    ev.allowance_bytes = e.allowance_bytes;
    return ev;
}

std::optional<std::uint64_t> rate_or_none(core::StateKind kind, std::uint64_t bps) {
    return kind == core::StateKind::Throttled ? std::optional(bps) : std::nullopt;
}

}  // namespace

store::SubscriberStateRecord initial_state(const store::PolicySubscriber& subscriber) {
    store::SubscriberStateRecord s;
    s.subscriber_id = subscriber.id;
    s.state = "normal";
    s.reason = "new subscriber";
    s.since = subscriber.created_at;
    return s;
}

core::DesiredState desired_of(const store::SubscriberStateRecord& state) {
    core::DesiredState d;
    d.kind = core::state_from_string(state.state).value_or(core::StateKind::Normal);
    if (d.kind == core::StateKind::Throttled) {
        d.rate = core::Rate{state.down_bps.value_or(0), state.up_bps.value_or(0)};
    }
    return d;
}

namespace {

store::NewEvent cycle_event(const store::PolicySubscriber& subscriber,
                            const core::Evaluation& evaluation, const core::Cycle& cycle,
                            core::TimePoint previous_start, core::TimePoint now) {
    auto ev = event(subscriber, evaluation, now, "cycle",
                    "new billing cycle from " + core::iso8601_utc(cycle.start));
    ev.detail_json = nlohmann::json{{"cycle_start", core::iso8601_utc(cycle.start)},
                                    {"cycle_end", core::iso8601_utc(cycle.end)},
                                    {"previous_cycle_start", core::iso8601_utc(previous_start)}}
                         .dump();
    return ev;
}

// The state row takes the evaluated state; the event says from what to what.
void change_state(const store::PolicySubscriber& subscriber, const core::Evaluation& evaluation,
                  const core::DesiredState& before, core::TimePoint now, store::PolicyDecision& d) {
    const core::DesiredState& after = evaluation.state;
    auto ev = event(subscriber, evaluation, now, "state", evaluation.reason);
    ev.from_state = std::string(core::to_string(before.kind));
    ev.to_state = std::string(core::to_string(after.kind));
    nlohmann::json detail = nlohmann::json::object();
    if (after.kind == core::StateKind::Throttled) {
        detail["down_bps"] = after.rate.down_bps;
        detail["up_bps"] = after.rate.up_bps;
    }
    ev.detail_json = detail.dump();
    d.events.push_back(std::move(ev));
    d.state.state = std::string(core::to_string(after.kind));
    d.state.down_bps = rate_or_none(after.kind, after.rate.down_bps);
    d.state.up_bps = rate_or_none(after.kind, after.rate.up_bps);
    d.state.reason = evaluation.reason;
    d.state.since = now;
}

// Each warning threshold is reported once per cycle: the highest one reached.
void warn_if_new(const store::PolicySubscriber& subscriber, const core::Evaluation& evaluation,
                 core::TimePoint now, store::PolicyDecision& d) {
    const unsigned reached =
        evaluation.warnings_reached.empty() ? 0 : evaluation.warnings_reached.back();
    if (reached <= d.state.warned_percent) {
        return;
    }
    auto ev = event(subscriber, evaluation, now, "warning",
                    std::to_string(reached) + "% of the allowance used");
    ev.detail_json = nlohmann::json{{"percent", reached}}.dump();
    d.events.push_back(std::move(ev));
    d.state.warned_percent = reached;
}

}  // namespace

Decision decide(const store::PolicySubscriber& subscriber, const core::Evaluation& evaluation,
                const core::Cycle& cycle,
                const std::optional<store::SubscriberStateRecord>& previous, core::TimePoint now) {
    const store::SubscriberStateRecord prev = previous.value_or(initial_state(subscriber));
    const bool same_cycle = prev.cycle_start == cycle.start;
    store::PolicyDecision d;
    d.external_id = subscriber.external_id;
    d.state = prev;
    d.state.cycle_start = cycle.start;
    d.state.warned_percent = same_cycle ? prev.warned_percent : 0;
    if (prev.cycle_start && !same_cycle) {
        d.events.push_back(cycle_event(subscriber, evaluation, cycle, *prev.cycle_start, now));
    }
    const core::DesiredState before = desired_of(prev);
    const bool changed = !(before == evaluation.state);
    if (changed) {
        change_state(subscriber, evaluation, before, now, d);
    }
    warn_if_new(subscriber, evaluation, now, d);

    Decision out;
    out.state_changed = changed;
    const bool first_row = !previous.has_value();
    if (!d.events.empty() || (!first_row && !same_cycle)) {
        out.record = std::move(d);
    }
    return out;
}

}  // namespace ctquota::policy
