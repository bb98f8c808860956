#pragma once
// Policy evaluation: (plan, this cycle's usage, override, top-ups, now) ->
// desired state, warnings and the numbers the API and the enforcer show.
// Pure and total: no clock, no I/O, never throws for a validated plan.
//
// Semantics (policies/README.md says the same for operators):
// - counted bytes = the plan's directions, minus the free-window part when
//   the plan has free windows, minus the zero-rated part when it has
//   zero-rated destinations (each subtraction floored at 0).
// - allowance = (quota_override, else plan.quota_bytes) + bytes of top-ups
//   active at now (created_at <= now < expires_at), saturating.
// - the highest tier whose floor(at_percent * allowance / 100) <= counted
//   applies; no plan or an unlimited plan is always Normal (an override is
//   then ignored).
// - next_check = min(cycle end, the next top-up creation or expiry after now).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/cycle.hpp"
#include "core/plan.hpp"

namespace ctquota::core {

enum class StateKind : std::uint8_t { Normal, Throttled, Blocked };
std::string_view to_string(StateKind);  // "normal" | "throttled" | "blocked"
std::optional<StateKind> state_from_string(std::string_view);

struct CycleUsage {                                        // this cycle, summed over gateways
    std::uint64_t up_bytes = 0, down_bytes = 0;            // everything
    std::uint64_t free_up_bytes = 0, free_down_bytes = 0;  // the part in free windows
    std::uint64_t zero_up_bytes = 0, zero_down_bytes = 0;  // the part to zero-rated destinations
                                                           // (outside free windows)
    bool operator==(const CycleUsage&) const = default;
};

struct TopUp {
    std::uint64_t bytes = 0;
    TimePoint created_at{};
    TimePoint expires_at{};
    bool operator==(const TopUp&) const = default;
};

struct EvaluationInput {
    const Plan* plan = nullptr;  // nullptr: no plan = unlimited
    Cycle cycle;
    CycleUsage usage;
    std::optional<std::uint64_t> quota_override;
    std::vector<TopUp> topups;
    TimePoint now{};
};

struct DesiredState {
    StateKind kind = StateKind::Normal;
    Rate rate;  // Throttled only
    bool operator==(const DesiredState&) const = default;
};

struct Evaluation {
    DesiredState state;
    std::uint64_t counted_bytes = 0;
    std::optional<std::uint64_t> allowance_bytes;    // nullopt: unlimited
    std::optional<std::uint64_t> remaining_bytes;    // allowance - counted, floor 0
    std::vector<unsigned> warnings_reached;          // every warn_percent <= usage (ascending)
    std::optional<std::uint64_t> bytes_until_block;  // counted bytes left before the first Block
                                                     // tier (for the kernel quota)
    std::string reason;      // e.g. "100% of 10.0 GB used: block tier", "within allowance"
    TimePoint next_check{};  // cycle end or the next top-up expiry, whichever is first
};

Evaluation evaluate(const EvaluationInput& input);

// The parts of evaluate(), for callers that need one number.
std::uint64_t counted_bytes(const Plan& plan, const CycleUsage& usage);
// The plan's directions of (up, down), saturating: counted bytes when nothing
// is free or zero-rated (e.g. one gateway's row for a kernel-armed plan).
std::uint64_t counted_of(CountedDirections counts, std::uint64_t up, std::uint64_t down);
// floor(allowance * percent / 100), saturating at UINT64_MAX.
std::uint64_t percent_of(std::uint64_t allowance, unsigned percent);
// Sum of the top-ups active at now (created_at <= now < expires_at), saturating.
std::uint64_t active_topup_bytes(const std::vector<TopUp>& topups, TimePoint now);

}  // namespace ctquota::core
