#pragma once
// notify::WebhookSender: the daemon thread that POSTs enforcement events from
// the webhook outbox (store::WebhookOutbox) to the configured URLs. Each
// request carries the JSON payload and
//   X-Ctquota-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<delivery id>.<body>",
//                        keyed with the secret>  (receivers: reject a t more than 5
//                        minutes away and a delivery id seen within that window)
//   X-Ctquota-Delivery:  <outbox id>  (the same on every retry: receivers dedupe on it)
//   X-Ctquota-Event:     <kind>
// Only to URLs in the config: a row naming another URL is never sent.
// A 2xx answer marks the row delivered; anything else (refused, timeout,
// 3xx/4xx/5xx) is retried with a capped exponential backoff. Delivery is at
// least once. It wakes on the outbox's commit notifications, on nudge(), and
// once a second; it has its own database connections and never blocks the
// accounting threads. This file and the .cpp are the only users of the HTTP
// client library.

#include <atomic>
#include <chrono>
#include <cstdint>
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
    std::vector<std::string> urls;  // for the outbox; the sender delivers whatever rows are due
    std::string secret;
    std::chrono::milliseconds timeout{5000};  // connect, and each read/write
    store::WebhookBackoff backoff;
    std::chrono::milliseconds poll{1000};
    std::size_t batch = 32;  // rows leased per claim
};

// "t=<unix_seconds>,v1=" + lower-case hex HMAC-SHA256(secret, "<t>.<delivery_id>.<body>"):
// the time and the delivery id are signed with the body, so a captured
// request cannot be replayed later or under another id.
std::string webhook_signature(std::string_view secret, std::int64_t unix_seconds,
                              std::int64_t delivery_id, std::string_view body);

// "https://h:8443/p?q" -> {"https://h:8443", "/p?q"}; nullopt unless http(s).
struct WebhookTarget {
    std::string origin;
    std::string path;
};
std::optional<WebhookTarget> split_webhook_url(std::string_view url);

class WebhookSender {
  public:
    // Counts deliveries and failed attempts in `metrics` (on /metrics).
    WebhookSender(WebhookSenderOptions options, metrics::Metrics& metrics);
    ~WebhookSender();
    WebhookSender(const WebhookSender&) = delete;
    WebhookSender& operator=(const WebhookSender&) = delete;

    void start();
    // Finishes the delivery in progress (at most one timeout), then joins.
    void stop();
    // Look for due rows now (e.g. right after committing events in-process).
    void nudge();

  private:
    void run();
    // Delivers one leased batch; false when there was nothing due.
    bool deliver_batch();
    // Empty on success (2xx), else why not.
    std::string post(const store::WebhookDelivery& d);
    void sleep_until_woken();

    WebhookSenderOptions options_;
    metrics::Metrics& metrics_;
    store::WebhookOutbox outbox_;
    store::Database db_;
    store::WebhookWakeups wakeups_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> nudged_{false};
    std::chrono::steady_clock::time_point next_db_warning_{};
    std::thread thread_;
};

}  // namespace ctquota::notify
