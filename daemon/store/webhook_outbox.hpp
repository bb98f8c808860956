#pragma once
// The webhook outbox (schema/007_webhooks.sql, 014_webhook_ownership.sql):
// enforcement events waiting to be POSTed to the configured receivers. Rows
// belong to the gateway that wrote them and name a receiver of its config;
// this gateway's outbox only ever claims its own rows for its own receivers.
// enqueue() runs in the caller's
// transaction, so an event and its deliveries commit together. The sender
// side leases due rows (claim), then records the outcome; a sender that dies
// mid-delivery leaves its rows to be claimed again when the lease ends, so
// delivery is at least once and receivers dedupe on the outbox id.
// This file owns the outbox SQL; it never speaks HTTP.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <pqxx/transaction>

#include "core/clock.hpp"
#include "store/database.hpp"

namespace ctquota::store {

// An enforcement event as the webhook payload carries it.
struct WebhookEvent {
    std::int64_t event_id = 0;  // enforcement_events.id
    std::string kind;           // "state" | "warning" | "cycle"
    std::string subscriber_id;  // the subscriber's external id, as in the API
    core::TimePoint at{};
    std::optional<std::string> from_state;  // "normal" | "throttled" | "blocked"
    std::optional<std::string> to_state;
    std::string reason;
    std::optional<std::uint64_t> counted_bytes;
    std::optional<std::uint64_t> allowance_bytes;  // nullopt: unlimited
};

// {"event_id", "kind", "subscriber_id", "at" (RFC 3339 UTC), "from", "to",
//  "reason", "counted_bytes", "allowance_bytes"}; absent values are null.
nlohmann::json webhook_payload(const WebhookEvent& event);

// One leased delivery.
struct WebhookDelivery {
    std::int64_t id = 0;  // webhook_outbox.id: the X-Ctquota-Delivery header
    std::optional<std::int64_t> event_id;
    std::string url;   // the receiver, as configured (one of the outbox's urls)
    std::string body;  // the payload as JSON text, exactly the bytes signed and sent
    std::string kind;  // payload "kind", for the X-Ctquota-Event header
    int attempts = 0;  // including this one
};

struct WebhookBackoff {
    std::chrono::milliseconds first{1000};
    std::chrono::milliseconds max{300'000};
};

// Delay before the next attempt after `attempts` failed ones (>= 1):
// first, 2*first, 4*first, ... capped at max.
std::chrono::milliseconds webhook_retry_delay(int attempts, const WebhookBackoff& backoff);

class WebhookOutbox {
  public:
    // `gateway_id`: this gateway's ([accounting] gateway_id), stamped on the
    // rows it writes and required of the rows it claims.
    WebhookOutbox(std::string gateway_id, std::vector<std::string> urls,
                  WebhookBackoff backoff = {});

    // One row per configured receiver, in the caller's transaction; returns how many.
    // `event` is the payload (see webhook_payload); its integer "event_id", if
    // any, fills the event_id column. Throws std::invalid_argument when it is
    // not an object with a string "kind". With no URLs configured it does nothing.
    std::size_t enqueue(pqxx::work& txn, const nlohmann::json& event) const;
    // The same for many events, in one statement (in their order).
    std::size_t enqueue_all(pqxx::work& txn, const std::vector<nlohmann::json>& events) const;

    // Leases up to `limit` due, undelivered rows (earliest due first) of this
    // gateway for one of its receivers (`receiver`, one of urls(); empty: any
    // of them) for `lease`: attempts + 1, next_attempt_at = now + lease,
    // committed at once. Rows another sender is claiming right now are
    // skipped, not waited for. Rows of other gateways or naming anything
    // else are never returned.
    std::vector<WebhookDelivery> claim(Database& db, std::size_t limit,
                                       std::chrono::milliseconds lease,
                                       const std::string& receiver = {}) const;
    void mark_delivered(Database& db, std::int64_t id) const;
    // Due again after webhook_retry_delay(attempts); `error` is kept (truncated).
    void mark_failed(Database& db, const WebhookDelivery& delivery, std::string_view error) const;

    // When the earliest undelivered row of this gateway is due (nullopt: none waiting).
    std::optional<core::TimePoint> next_due(Database& db) const;

    [[nodiscard]] const std::vector<std::string>& urls() const { return urls_; }
    [[nodiscard]] const std::string& gateway_id() const { return gateway_id_; }

  private:
    std::string gateway_id_;
    std::vector<std::string> urls_;
    WebhookBackoff backoff_;
};

// Commit notifications of the outbox (its trigger NOTIFYs 'ctquota_webhook'),
// on a connection of its own, so a sender wakes as soon as rows are committed
// by any process. Connects lazily and again after a failure.
class WebhookWakeups {
  public:
    explicit WebhookWakeups(std::string url);
    ~WebhookWakeups();
    WebhookWakeups(const WebhookWakeups&) = delete;
    WebhookWakeups& operator=(const WebhookWakeups&) = delete;

    // Waits up to `d`; true when rows were committed meanwhile, or when the
    // connection failed (the caller should look rather than trust silence).
    bool wait(std::chrono::milliseconds d);

  private:
    struct Listener;
    std::string url_;
    std::unique_ptr<pqxx::connection> conn_;
    std::unique_ptr<Listener> listener_;
};

}  // namespace ctquota::store
