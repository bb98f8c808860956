#pragma once
// PolicyEngine: evaluates subscribers against their plans and makes the
// kernel follow. Its own thread and database connections. It re-evaluates
//   - subscribers whose usage a flush changed (usage_changed, from the flusher),
//   - subscribers whose plan, override, top-ups or bindings changed (NOTIFY
//     ctquota_policy, from the API, the CLI or plain SQL),
//   - everybody at their next check (cycle end, top-up expiry),
// records every state change in subscriber_state + enforcement_events (+ the
// webhook outbox) in one transaction, then applies it to the kernel. A full
// read-back reconcile runs at start-up and every policies.reconcile_interval.
// It keeps subscriber_state in memory as the state its own kernel holds; with
// several gateways the engines record each decision once (PolicyStore::record)
// and each applies it to its kernel. Other gateways' flushes arrive as NOTIFY
// ctquota_usage (core/usage_notice.hpp).

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <unordered_map>

#include "core/plan.hpp"
#include "enforce/enforcer.hpp"
#include "metrics/metrics.hpp"
#include "policy/policy_config.hpp"
#include "runtime/accountant.hpp"
#include "runtime/offset_clock.hpp"
#include "store/lease_store.hpp"
#include "store/policy_store.hpp"

namespace ctquota::policy {

class PolicyEngine {
  public:
    PolicyEngine(const PoliciesConfig& config, const std::string& database_url,
                 runtime::OffsetClock& clock, runtime::Accountant& accountant,
                 metrics::Metrics& metrics, std::unique_ptr<enforce::Enforcer> enforcer,
                 const store::WebhookOutbox* outbox);
    ~PolicyEngine();

    // Plans, subscribers, stored states, a full evaluation and a full
    // reconcile of the kernel. Throws store::DatabaseError when the database
    // does not answer (the caller retries), PlanFileError for a bad plan file
    // (fatal: nothing would say which plans are meant).
    void start_up();
    void start();
    void stop();

    // From the flusher, after a flush that began at `began` committed these
    // subscribers' changed usage (or found nothing to write: none).
    void usage_changed(const std::vector<core::SubscriberId>& ids,
                       std::chrono::steady_clock::time_point began);
    // Before start_up(): this gateway's own usage notices (NOTIFY ctquota_usage)
    // are ignored, usage_changed() told the engine already; every other
    // gateway's flush makes it re-evaluate the subscribers that flush changed.
    void set_gateway_id(std::string id) { gateway_id_ = std::move(id); }
    // SIGHUP: reload the plan files (a bad file keeps the previous plans).
    void request_reload();
    // Called (on the engine's thread) when subscribers or bindings changed.
    void on_subscribers_changed(std::function<void()> fn) { subscribers_changed_ = std::move(fn); }

  private:
    // A subscriber whose kernel quota is a slice leased to this gateway
    // (core/quota_lease.hpp, store/lease_store.hpp). The kernel's counter
    // started at zero when this gateway's counted bytes were `base` (an
    // epoch), so the quota is ceiling - base + the crossing slack.
    struct Armed {
        core::TimePoint cycle_start{};
        std::uint64_t base = 0;
        std::uint64_t ceiling = 0;        // leased: this gateway's counted bytes may reach this
        std::uint64_t bytes = 0;          // the kernel quota
        std::uint64_t peak = 0;           // the highest it was this epoch: what it may have passed
        std::uint64_t counted = 0;        // this gateway's counted bytes at the last settle
        core::TimePoint counted_at{};     // when `counted` last grew
        std::uint64_t rate = 0;           // bytes/s on this gateway, smoothed
        bool growing = false;             // counted_at was a growth: the rate is measured from it
        core::TimePoint raised_at{};      // when `bytes` last grew
        core::TimePoint stalled_until{};  // a used-up quota was replaced: its lease stays a ttl
        // When the quota was first seen used up at this limit (nothing has
        // passed it since): billing has all it passed a poll + flush later.
        std::optional<std::chrono::steady_clock::time_point> used_up_seen;
        std::optional<std::uint64_t> allowance;  // leases off: armed once per allowance
        std::optional<std::uint64_t> counted_at_grant;
        bool fresh = true;    // a new epoch: the kernel counter starts from zero (not applied yet)
        bool denied = false;  // said once
    };
    struct Evaluated {
        core::SubscriberId id = 0;
        core::Evaluation e;
        bool state_changed = false;
    };

    void loop();
    // At most once a second: true when the enforcer's kernel state was lost
    // (ruleset flushed, table or root qdisc deleted, interface re-created)
    // and it has forgotten it, so that a full reconcile rebuilds it now.
    bool kernel_needs_rebuild();
    // At start-up and each full reconcile: flowtables found (log + metrics).
    void check_flowtables();
    // One round of loop(): the plan reload, notifications (all of them when
    // `resync`), due checks, then `dirty` (extended in place, so a failed
    // round hands all of it to the next) is evaluated.
    void run_pass(std::vector<core::SubscriberId>& dirty, bool reload, bool resync,
                  std::optional<std::chrono::steady_clock::time_point> flushed_at);
    void handle_notifications(const std::vector<std::string>& payloads);
    // Other gateways' usage notices: the subscribers to re-evaluate.
    std::vector<core::SubscriberId> usage_of_other_gateways(
        const std::vector<std::string>& payloads);
    // Where plans are read from, and what a bad plan file does.
    enum class PlanReload {
        Stored,   // the plans table only (a NOTIFY about plans)
        Files,    // SIGHUP: mirror the files first; a bad file is refused, the plans in force stay
        StartUp,  // mirror the files first; a bad file throws PlanFileError (fatal)
    };
    void load_plans(PlanReload from);
    void refresh_subscribers(const std::vector<core::SubscriberId>& only);
    void install_usage_rules();
    // Returns how many subscribers' kernel state changed.
    std::size_t evaluate(const std::vector<core::SubscriberId>& ids, bool full_reconcile);
    std::vector<store::CycleKey> current_cycles(
        std::span<const core::SubscriberId> ids, core::TimePoint now,
        std::unordered_map<core::SubscriberId, core::Cycle>& cycles) const;
    Evaluated evaluate_one(const store::PolicySubscriber& s, const core::Cycle& cycle,
                           store::EvaluationInputs& in, core::TimePoint now,
                           std::vector<store::PolicyDecision>& decisions);
    // Settles this gateway's leases for the evaluated subscribers whose kernel
    // quota is armed (one transaction, throws DatabaseError): what armed_
    // should become for each (nullopt: not armed), applied after recording.
    std::unordered_map<core::SubscriberId, std::optional<Armed>> lease_slices(
        const std::vector<Evaluated>& done,
        const std::unordered_map<core::SubscriberId, core::Cycle>& cycles, core::TimePoint now);
    bool leasable(const core::Plan& plan, const core::Evaluation& e) const;
    Armed next_armed(const store::LeaseOutcome& o, core::TimePoint cycle_start,
                     core::TimePoint now) const;
    void count_lease(const store::LeaseOutcome& o, Armed& a, const std::string& who);
    // After next_armed: a new epoch where the kernel's count cannot be
    // raised or trusted (below); true when the gateway was short of its ceiling.
    bool settle_epoch(core::SubscriberId id, Armed& a, core::TimePoint now,
                      std::chrono::steady_clock::time_point flushed);
    // The kernel quota (its limit `limit`) is used up (nft counts the packets it drops
    // too, and lists what it counted capped at the limit). Throws EnforceError.
    bool exhausted(core::SubscriberId id, std::uint64_t limit);
    // A raise of a used-up quota in place would be eaten by what it dropped
    // meanwhile: a new epoch instead, passing exactly the raise.
    void raise_exhausted(core::SubscriberId id, Armed& a, std::uint64_t peak, core::TimePoint now);
    // A quiet gateway whose kernel quota is used up short of its ceiling (it
    // counted what was dropped after it, which billing never sees): a new
    // epoch from what billing counted; true when it started one.
    bool restart_short_epoch(core::SubscriberId id, Armed& a, core::TimePoint now,
                             std::chrono::steady_clock::time_point flushed);
    static bool may_be_short(const Armed& a);
    // After a limit lowered in place under the epoch's peak (a lease given
    // back or shrunk) was applied: not used up, it is the peak again.
    void settle_peak(core::SubscriberId id, Armed& a);
    // After the kernel state was lost: the rebuilt quotas count from zero again.
    void rebase_slices();
    std::vector<enforce::SubscriberTarget> reconcile_targets();
    std::size_t apply_to_kernel(const std::vector<enforce::SubscriberTarget>& targets, bool full);
    void schedule(core::SubscriberId id, core::TimePoint when);
    void check_soon(core::SubscriberId id, core::TimePoint when);  // earlier than scheduled only
    std::vector<core::SubscriberId> take_due(core::TimePoint now);
    enforce::SubscriberTarget target_of(const store::PolicySubscriber& s,
                                        const core::DesiredState& state);
    const core::Plan& plan_of(const store::PolicySubscriber& s) const;
    void publish_counts();

    const PoliciesConfig& config_;
    runtime::OffsetClock& clock_;
    runtime::Accountant& accountant_;
    metrics::Metrics& metrics_;
    std::unique_ptr<enforce::Enforcer> enforcer_;
    const store::WebhookOutbox* outbox_;
    store::Database db_;
    store::PolicyStore store_;
    store::LeaseStore leases_;
    core::LeaseSettings lease_settings_;
    std::unique_ptr<store::PolicyListener> listener_;
    std::function<void()> subscribers_changed_;
    std::string gateway_id_;

    core::Plan unlimited_;
    std::unordered_map<std::string, core::Plan> plans_;
    std::unordered_map<core::SubscriberId, store::PolicySubscriber> subscribers_;
    std::unordered_map<core::SubscriberId, store::SubscriberStateRecord> states_;
    std::unordered_map<core::SubscriberId, Armed> armed_;
    std::multimap<core::TimePoint, core::SubscriberId> checks_;
    std::unordered_map<core::SubscriberId, core::TimePoint> check_of_;
    std::chrono::steady_clock::time_point next_reconcile_{};
    std::chrono::steady_clock::time_point next_kernel_check_{};
    std::string kernel_damage_;  // last reported, so that a lasting one is logged once
    std::vector<enforce::Flowtable> flowtables_;  // last reported

    std::mutex mu_;  // guards the hand-offs below
    std::set<core::SubscriberId> usage_dirty_;
    std::chrono::steady_clock::time_point usage_dirty_since_{};  // first flush not evaluated
    // When the last flush of this gateway began that succeeded (or found
    // nothing to write): billing has what was counted before it.
    std::chrono::steady_clock::time_point flush_ok_since_{};
    bool reload_requested_ = false;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace ctquota::policy
