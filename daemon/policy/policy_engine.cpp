#include "policy/policy_engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_set>

#include "core/cycle.hpp"
#include "core/plan_usage_rules.hpp"
#include "core/usage_notice.hpp"
#include "policy/decisions.hpp"
#include "store/state_store.hpp"

namespace ctquota::policy {
namespace {

constexpr auto kListenWait = std::chrono::milliseconds(200);
constexpr auto kNoWait = std::chrono::milliseconds(0);
constexpr auto kKernelCheckEvery = std::chrono::seconds(1);

}  // namespace

PolicyEngine::PolicyEngine(const PoliciesConfig& config, const std::string& database_url,
                           runtime::OffsetClock& clock, runtime::Accountant& accountant,
                           metrics::Metrics& metrics, std::unique_ptr<enforce::Enforcer> enforcer,
                           const store::WebhookOutbox* outbox)
    : config_(config),
      clock_(clock),
      accountant_(accountant),
      metrics_(metrics),
      enforcer_(std::move(enforcer)),
      outbox_(outbox),
      db_(database_url),
      store_(db_),
      leases_(db_),
      lease_settings_{config.lease_min_bytes, config.lease_slice_time, config.lease_ttl},
      listener_(std::make_unique<store::PolicyListener>(database_url)) {
    unlimited_.name = "";
    unlimited_.description = "no plan: unlimited";
}

PolicyEngine::~PolicyEngine() {
    stop();
}

void PolicyEngine::start_up() {
    load_plans(PlanReload::StartUp);
    refresh_subscribers({});
    states_.clear();
    for (auto& s : store::StateStore(db_).all()) {
        states_.emplace(s.subscriber_id, std::move(s));
    }
    install_usage_rules();
    std::vector<core::SubscriberId> all;
    all.reserve(subscribers_.size());
    for (const auto& [id, s] : subscribers_) {
        all.push_back(id);
    }
    evaluate(all, true);
    next_reconcile_ =
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(config_.reconcile_interval);
    spdlog::info("policy engine: {} plans, {} subscribers, {} not normal", plans_.size(),
                 subscribers_.size(),
                 metrics_.subscribers_throttled.load() + metrics_.subscribers_blocked.load());
}

void PolicyEngine::start() {
    thread_ = std::thread([this] { loop(); });
}

void PolicyEngine::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    listener_->wake();
    if (thread_.joinable()) {
        thread_.join();
    }
}

void PolicyEngine::usage_changed(const std::vector<core::SubscriberId>& ids,
                                 std::chrono::steady_clock::time_point began) {
    std::lock_guard lock(mu_);
    flush_ok_since_ = std::max(flush_ok_since_, began);
    if (ids.empty()) {
        return;  // nothing to evaluate: no wake-up
    }
    if (usage_dirty_.empty()) {
        usage_dirty_since_ = std::chrono::steady_clock::now();
    }
    usage_dirty_.insert(ids.begin(), ids.end());
    listener_->wake();  // evaluate now, not after the listen timeout
}

void PolicyEngine::request_reload() {
    std::lock_guard lock(mu_);
    reload_requested_ = true;
}

const core::Plan& PolicyEngine::plan_of(const store::PolicySubscriber& s) const {
    auto it = plans_.find(s.plan);
    return it == plans_.end() ? unlimited_ : it->second;
}

void PolicyEngine::install_usage_rules() {
    std::unordered_map<core::SubscriberId, core::PlanUsageRules::Assignment> assignments;
    assignments.reserve(subscribers_.size());
    for (const auto& [id, s] : subscribers_) {
        if (!s.plan.empty()) {
            assignments.emplace(id, core::PlanUsageRules::Assignment{s.plan, s.created_at});
        }
    }
    accountant_.set_usage_rules(std::make_shared<core::PlanUsageRules>(plans_, assignments));
    if (enforcer_) {
        std::map<std::string, std::vector<core::Prefix>> allowed;
        for (const auto& [name, plan] : plans_) {
            allowed.emplace(name, plan.always_allowed);
        }
        enforcer_->set_allowed(std::move(allowed));
    }
}

void PolicyEngine::refresh_subscribers(const std::vector<core::SubscriberId>& only) {
    auto rows = store_.subscribers(only, clock_.now());
    if (only.empty()) {
        subscribers_.clear();
    }
    std::unordered_set<core::SubscriberId> missing(only.begin(), only.end());
    for (auto& s : rows) {
        missing.erase(s.id);
        const auto id = s.id;
        subscribers_.insert_or_assign(id, std::move(s));
    }
    const std::vector<core::SubscriberId> gone(missing.begin(), missing.end());
    if (gone.empty()) {
        return;
    }
    for (const auto id : gone) {
        subscribers_.erase(id);
        armed_.erase(id);
        if (auto it = states_.find(id); it != states_.end()) {
            it->second.state = "normal";  // its kernel state goes with it
        }
    }
    if (enforcer_) {
        const auto report = enforcer_->remove(gone);
        metrics_.enforcement_errors += report.errors.size();
    }
    spdlog::info("policy engine: {} subscribers removed from enforcement", gone.size());
}

void PolicyEngine::schedule(core::SubscriberId id, core::TimePoint when) {
    if (auto it = check_of_.find(id); it != check_of_.end()) {
        if (it->second == when) {
            return;
        }
        auto [lo, hi] = checks_.equal_range(it->second);
        for (auto c = lo; c != hi; ++c) {
            if (c->second == id) {
                checks_.erase(c);
                break;
            }
        }
    }
    check_of_[id] = when;
    checks_.emplace(when, id);
}

std::vector<core::SubscriberId> PolicyEngine::take_due(core::TimePoint now) {
    std::vector<core::SubscriberId> due;
    while (!checks_.empty() && checks_.begin()->first <= now) {
        due.push_back(checks_.begin()->second);
        check_of_.erase(checks_.begin()->second);
        checks_.erase(checks_.begin());
    }
    return due;
}

void PolicyEngine::handle_notifications(const std::vector<std::string>& payloads) {
    bool everything = false;
    std::vector<core::SubscriberId> ids;
    for (const auto& p : payloads) {
        if (p == "*") {
            everything = true;
            continue;
        }
        try {
            ids.push_back(std::stoll(p));
        } catch (const std::exception&) {
            spdlog::warn("policy engine: ignoring notification '{}'", p);
        }
    }
    if (everything) {
        load_plans(PlanReload::Stored);
        refresh_subscribers({});
    } else if (!ids.empty()) {
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        refresh_subscribers(ids);
    } else {
        return;
    }
    install_usage_rules();
    if (subscribers_changed_) {
        subscribers_changed_();
    }
    if (everything) {
        ids.clear();
        for (const auto& [id, s] : subscribers_) {
            ids.push_back(id);
        }
    }
    evaluate(ids, false);
}

std::vector<core::SubscriberId> PolicyEngine::usage_of_other_gateways(
    const std::vector<std::string>& payloads) {
    std::vector<core::SubscriberId> ids;
    for (const auto& p : payloads) {
        auto notice = core::decode_usage_notice(p);
        if (!notice) {
            spdlog::warn("policy engine: ignoring usage notice '{}'", p.substr(0, 80));
            continue;
        }
        if (notice->gateway == gateway_id_) {
            continue;
        }
        ++metrics_.usage_notices_received;
        if (notice->since_us) {
            notice->ids = store_.changed_since(notice->gateway, *notice->since_us);
        }
        ids.insert(ids.end(), notice->ids.begin(), notice->ids.end());
    }
    return ids;
}

void PolicyEngine::loop() {
    auto backoff = std::chrono::milliseconds(500);
    std::vector<core::SubscriberId> retry;
    // After a failed pass: notifications taken from the listener in it are
    // gone, so the next good pass re-reads everything (as after a reconnect).
    bool resync = false;
    while (true) {
        std::vector<core::SubscriberId> dirty;
        bool reload = false;
        std::optional<std::chrono::steady_clock::time_point> flushed_at;
        {
            std::lock_guard lock(mu_);
            if (stopping_) {
                break;
            }
            dirty.assign(usage_dirty_.begin(), usage_dirty_.end());
            if (!dirty.empty()) {
                flushed_at = usage_dirty_since_;
            }
            usage_dirty_.clear();
            std::swap(reload, reload_requested_);
        }
        dirty.insert(dirty.end(), retry.begin(), retry.end());
        clock_.refresh();
        try {
            run_pass(dirty, reload, resync, flushed_at);
            resync = false;
            backoff = std::chrono::milliseconds(500);
        } catch (const std::exception& e) {
            ++metrics_.db_errors;
            retry = std::move(dirty);
            resync = true;
            if (reload) {
                request_reload();  // a SIGHUP during an outage still reloads
            }
            spdlog::warn("policy engine: {}; retrying in {} ms (then re-reading all changes)",
                         e.what(), backoff.count());
            std::this_thread::sleep_for(backoff);
            backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
            continue;
        }
        retry.clear();
    }
}

void PolicyEngine::run_pass(std::vector<core::SubscriberId>& dirty, bool reload, bool resync,
                            std::optional<std::chrono::steady_clock::time_point> flushed_at) {
    if (reload) {
        load_plans(PlanReload::Files);
        install_usage_rules();
        dirty.clear();
        for (const auto& [id, s] : subscribers_) {
            dirty.push_back(id);
        }
    }
    // Usage already waiting: only look for notifications, do not wait for them.
    auto notes = listener_->wait(dirty.empty() && !resync ? kListenWait : kNoWait);
    if (resync) {
        notes.policy.emplace_back("*");
    }
    const auto others = usage_of_other_gateways(notes.usage);
    dirty.insert(dirty.end(), others.begin(), others.end());
    handle_notifications(notes.policy);
    const bool rebuild = kernel_needs_rebuild();
    const bool full = rebuild || std::chrono::steady_clock::now() >= next_reconcile_;
    auto due = take_due(clock_.now());
    dirty.insert(dirty.end(), due.begin(), due.end());
    std::sort(dirty.begin(), dirty.end());
    dirty.erase(std::unique(dirty.begin(), dirty.end()), dirty.end());
    if ((!dirty.empty() || full) && evaluate(dirty, full) > 0 && flushed_at) {
        metrics_.observe_flush_to_kernel(std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - *flushed_at));
    }
    if (full) {
        next_reconcile_ = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              config_.reconcile_interval);
    }
}

bool PolicyEngine::kernel_needs_rebuild() {
    const auto now = std::chrono::steady_clock::now();
    if (!enforcer_ || now < next_kernel_check_) {
        return false;
    }
    next_kernel_check_ = now + kKernelCheckEvery;
    std::string damage;
    try {
        damage = enforcer_->damage();
        if (damage.empty()) {
            kernel_damage_.clear();
            return false;
        }
        enforcer_->forget_kernel();
        rebase_slices();
    } catch (const enforce::EnforceError& e) {  // e.g. the interface is gone: next second
        damage += (damage.empty() ? "" : "; ") + std::string("cannot rebuild yet: ") + e.what();
        if (damage != kernel_damage_) {
            spdlog::error("enforce: kernel state lost ({})", damage);
        }
        kernel_damage_ = damage;
        return false;
    }
    ++metrics_.kernel_repairs;
    spdlog::warn("enforce: kernel state lost ({}); rebuilding all of it", damage);
    kernel_damage_.clear();
    return true;
}

}  // namespace ctquota::policy
