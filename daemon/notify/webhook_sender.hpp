#pragma once
// notify::WebhookSender: the daemon threads that POST enforcement events from
// the webhook outbox (store::WebhookOutbox) to the configured receivers, one
// thread per receiver (with its own database connections), so a slow or
// hostile receiver only ever delays its own deliveries. Each delivery has one
// overall deadline (`timeout`: connect, TLS, send, the answer's status line)
// and reads at most the answer's headers (http_post.hpp). Each request
// carries the JSON payload and
//   X-Ctquota-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<delivery id>.<body>",
//                        keyed with the secret>  (receivers: reject a t more than 5
//                        minutes away and a delivery id seen within that window)
//   X-Ctquota-Delivery:  <outbox id>  (the same on every retry: receivers dedupe on it)
//   X-Ctquota-Event:     <kind>
// Only this gateway's rows, only to the configured receivers: a row of
// another gateway, or naming anything else, is never claimed, and the
// request goes to the receiver as configured. A 2xx answer marks the row
// delivered; anything else (refused, deadline, 3xx/4xx/5xx) is retried with
// a capped exponential backoff. Delivery is at least once. Each thread wakes
// on the outbox's commit notifications, on nudge(), and once a second; none
// blocks the accounting threads.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "metrics/metrics.hpp"
#include "store/webhook_outbox.hpp"

namespace ctquota::notify {

struct WebhookSenderOptions {
    std::string database_url;
    std::string gateway_id;         // whose rows ([accounting] gateway_id)
    std::vector<std::string> urls;  // the receivers, one thread each
    std::string secret;
    std::chrono::milliseconds timeout{5000};     // one delivery, all of it
    std::size_t max_answer_header_bytes = 8192;  // the answer's body is never read
    store::WebhookBackoff backoff;
    std::chrono::milliseconds poll{1000};
    std::size_t batch = 32;  // rows leased per claim
};

// "t=<unix_seconds>,v1=" + lower-case hex HMAC-SHA256(secret, "<t>.<delivery_id>.<body>"):
// the time and the delivery id are signed with the body, so a captured
// request cannot be replayed later or under another id.
std::string webhook_signature(std::string_view secret, std::int64_t unix_seconds,
                              std::int64_t delivery_id, std::string_view body);

class WebhookSender {
  public:
    // Counts deliveries and failed attempts in `metrics` (on /metrics).
    WebhookSender(WebhookSenderOptions options, metrics::Metrics& metrics);
    ~WebhookSender();
    WebhookSender(const WebhookSender&) = delete;
    WebhookSender& operator=(const WebhookSender&) = delete;

    void start();
    // Finishes the deliveries in progress (at most one timeout), then joins.
    void stop();
    // Look for due rows now (e.g. right after committing events in-process).
    void nudge();

  private:
    // One receiver's loop, on its own thread with its own connections.
    void run(const std::string& receiver);
    // Delivers one leased batch of `receiver`; false when there was nothing due.
    bool deliver_batch(store::Database& db, const std::string& receiver);
    // Empty on success (2xx), else why not.
    std::string post(const store::WebhookDelivery& d, const std::string& receiver);
    void sleep_until_woken(store::WebhookWakeups& wakeups, std::atomic<bool>& nudged);

    WebhookSenderOptions options_;
    metrics::Metrics& metrics_;
    store::WebhookOutbox outbox_;
    std::atomic<bool> stopping_{false};
    std::vector<std::unique_ptr<std::atomic<bool>>> nudged_;  // one per receiver
    std::vector<std::thread> threads_;
};

}  // namespace ctquota::notify
