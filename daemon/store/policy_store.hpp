#pragma once
// The policy engine's reads, in batches: who the subscribers are (plan,
// start, active prefixes) and, for each one's current cycle, the inputs of
// core::evaluate (usage summed over gateways, override, active top-ups) and
// nothing else: each gateway's engine keeps subscriber_state in memory (the
// state its kernel holds). Writes go through StateStore/EventStore/
// WebhookOutbox in the engine's own transaction.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/plan_evaluation.hpp"
#include "core/subscriber_index.hpp"
#include "store/database.hpp"
#include "store/event_store.hpp"
#include "store/state_store.hpp"
#include "store/webhook_outbox.hpp"

namespace ctquota::store {

struct PolicySubscriber {
    core::SubscriberId id = 0;
    std::string external_id;
    std::string plan;  // empty: no plan (unlimited, calendar month)
    core::TimePoint created_at{};
    std::vector<core::Prefix> prefixes;  // bindings valid now
};

struct EvaluationInputs {
    core::CycleUsage usage;
    std::optional<std::uint64_t> quota_override;
    std::vector<core::TopUp> topups;  // not yet expired
};

struct CycleKey {
    core::SubscriberId id = 0;
    core::TimePoint cycle_start{};
};

// One decision of the engine to record: the subscriber's new state row and
// the events it produced (state change, warning, new cycle).
struct PolicyDecision {
    SubscriberStateRecord state;
    std::string external_id;
    std::vector<NewEvent> events;
};

class PolicyStore {
  public:
    explicit PolicyStore(Database& db) : db_(db) {}

    // In one transaction: every state row, every event and (when `outbox` is
    // given) each event's webhook deliveries. Returns the events' ids in order.
    // What the stored row says already (another gateway's engine recorded the
    // same decision about the same sum) is left out: no second event or webhook.
    std::vector<std::int64_t> record(const std::vector<PolicyDecision>& decisions,
                                     const WebhookOutbox* outbox);

    // Subscribers not removed; `only` limits the read (empty: all). A
    // subscriber in `only` that is removed or unknown is simply absent.
    std::vector<PolicySubscriber> subscribers(const std::vector<core::SubscriberId>& only,
                                              core::TimePoint now);
    // Inputs for each subscriber's cycle (every key gets an entry).
    // Subscribers whose totals of `gateway` a flush changed at or after
    // `since_us` (a usage notice too long to list them, core/usage_notice.hpp).
    std::vector<core::SubscriberId> changed_since(const std::string& gateway,
                                                  std::int64_t since_us);
    std::unordered_map<core::SubscriberId, EvaluationInputs> inputs(
        const std::vector<CycleKey>& keys, core::TimePoint now);

  private:
    Database& db_;
};

}  // namespace ctquota::store

namespace ctquota::store {

struct ListenerNotifications {
    std::vector<std::string> policy;  // ctquota_policy: a subscriber id, or "*"
    std::vector<std::string> usage;   // ctquota_usage: core/usage_notice.hpp
};

// LISTEN ctquota_policy and ctquota_usage on a connection of its own: the
// payloads of the notifications that arrived. Reconnects after a failure; a
// reconnect returns policy "*" once, since notifications sent while it was
// away (of either channel) are lost.
class PolicyListener {
  public:
    explicit PolicyListener(std::string url);
    ~PolicyListener();
    PolicyListener(const PolicyListener&) = delete;
    PolicyListener& operator=(const PolicyListener&) = delete;

    // Waits up to `timeout` for notifications, or until wake(); once some
    // arrived, also takes those following within a few ms (a burst from one
    // commit comes over several socket reads). Throws
    // DatabaseError when the server cannot be reached (the caller backs off
    // and calls again).
    ListenerNotifications wait(std::chrono::milliseconds timeout);
    // Ends the current (or next) wait() early; any thread.
    void wake();

  private:
    struct Impl;
    std::string url_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ctquota::store
