#include "store/webhook_outbox.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <stdexcept>
#include <thread>

#include "core/calendar.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

constexpr std::size_t kMaxError = 500;

template <typename T>
nlohmann::json or_null(const std::optional<T>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

// last_error is for people reading the table: bounded, printable ASCII only
// (an HTTP library's message may carry bytes that are not valid UTF-8).
std::string stored_error(std::string_view error) {
    std::string out(error.substr(0, kMaxError));
    for (auto& c : out) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f) {
            c = '?';
        }
    }
    return out;
}

}  // namespace

nlohmann::json webhook_payload(const WebhookEvent& e) {
    return {{"event_id", e.event_id},
            {"kind", e.kind},
            {"subscriber_id", e.subscriber_id},
            {"at", core::iso8601_utc(e.at)},
            {"from", or_null(e.from_state)},
            {"to", or_null(e.to_state)},
            {"reason", e.reason},
            {"counted_bytes", or_null(e.counted_bytes)},
            {"allowance_bytes", or_null(e.allowance_bytes)}};
}

std::chrono::milliseconds webhook_retry_delay(int attempts, const WebhookBackoff& backoff) {
    auto delay = backoff.first;
    for (int i = 1; i < attempts && delay < backoff.max; ++i) {
        delay *= 2;
    }
    return std::min(delay, backoff.max);
}

WebhookOutbox::WebhookOutbox(std::string gateway_id, std::vector<std::string> urls,
                             WebhookBackoff backoff)
    : gateway_id_(std::move(gateway_id)), urls_(std::move(urls)), backoff_(backoff) {}

std::size_t WebhookOutbox::enqueue(pqxx::work& txn, const nlohmann::json& event) const {
    return enqueue_all(txn, {event});
}

std::size_t WebhookOutbox::enqueue_all(pqxx::work& txn,
                                       const std::vector<nlohmann::json>& events) const {
    for (const auto& e : events) {
        if (!e.is_object() || !e.contains("kind") || !e["kind"].is_string()) {
            throw std::invalid_argument("a webhook event is a JSON object with a string \"kind\"");
        }
    }
    if (events.empty() || urls_.empty()) {
        return 0;
    }
    txn.exec_params(
        "INSERT INTO webhook_outbox (event_id, payload, url, gateway_id) "
        "SELECT CASE WHEN jsonb_typeof(e.value->'event_id') = 'number' "
        "THEN (e.value->>'event_id')::bigint END, e.value, u.value, $3 "
        "FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(value, n) "
        "CROSS JOIN jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS u(value, m) "
        "ORDER BY e.n, u.m",
        nlohmann::json(events).dump(), nlohmann::json(urls_).dump(), gateway_id_);
    return events.size() * urls_.size();
}

std::vector<WebhookDelivery> WebhookOutbox::claim(Database& db, std::size_t limit,
                                                  std::chrono::milliseconds lease,
                                                  const std::string& receiver) const {
    if (!receiver.empty() && std::find(urls_.begin(), urls_.end(), receiver) == urls_.end()) {
        return {};  // not a receiver of ours
    }
    const auto receivers =
        receiver.empty() ? nlohmann::json(urls_) : nlohmann::json::array({receiver});
    return in_transaction(db, "claiming webhook deliveries", [&](pqxx::work& txn) {
        // payload::text is PostgreSQL's canonical jsonb text: the bytes signed and sent.
        const auto rows = txn.exec_params(
            "UPDATE webhook_outbox o SET attempts = o.attempts + 1,"
            " next_attempt_at = now() + $2::bigint * interval '1 millisecond'"
            " FROM (SELECT id FROM webhook_outbox WHERE delivered_at IS NULL"
            "       AND gateway_id = $3"
            "       AND url IN (SELECT jsonb_array_elements_text($4::jsonb))"
            "       AND next_attempt_at <= now() ORDER BY next_attempt_at, id LIMIT $1"
            "       FOR UPDATE SKIP LOCKED) due"
            " WHERE o.id = due.id"
            " RETURNING o.id, o.event_id, o.url, o.payload::text,"
            " coalesce(o.payload->>'kind', ''), o.attempts",
            static_cast<std::int64_t>(limit), static_cast<std::int64_t>(lease.count()), gateway_id_,
            receivers.dump());
        std::vector<WebhookDelivery> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            WebhookDelivery d;
            d.id = r[0].as<std::int64_t>();
            if (!r[1].is_null()) {
                d.event_id = r[1].as<std::int64_t>();
            }
            d.url = r[2].as<std::string>();
            d.body = r[3].as<std::string>();
            d.kind = r[4].as<std::string>();
            d.attempts = r[5].as<int>();
            out.push_back(std::move(d));
        }
        std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
        return out;
    });
}

void WebhookOutbox::mark_delivered(Database& db, std::int64_t id) const {
    in_transaction(db, "marking a webhook delivered", [&](pqxx::work& txn) {
        txn.exec_params(
            "UPDATE webhook_outbox SET delivered_at = now(), last_error = NULL WHERE id = $1", id);
        return 0;
    });
}

void WebhookOutbox::mark_failed(Database& db, const WebhookDelivery& delivery,
                                std::string_view error) const {
    const auto delay = webhook_retry_delay(delivery.attempts, backoff_);
    in_transaction(db, "marking a webhook failed", [&](pqxx::work& txn) {
        txn.exec_params(
            "UPDATE webhook_outbox SET last_error = $2,"
            " next_attempt_at = now() + $3::bigint * interval '1 millisecond'"
            " WHERE id = $1 AND delivered_at IS NULL",
            delivery.id, stored_error(error), static_cast<std::int64_t>(delay.count()));
        return 0;
    });
}

std::optional<core::TimePoint> WebhookOutbox::next_due(Database& db) const {
    return in_transaction(
        db, "reading the webhook backlog", [&](pqxx::work& txn) -> std::optional<core::TimePoint> {
            const auto r = txn.exec_params("SELECT " + micros_of("min(next_attempt_at)") +
                                               " FROM webhook_outbox WHERE delivered_at IS NULL"
                                               " AND gateway_id = $1",
                                           gateway_id_);
            if (r[0][0].is_null()) {
                return std::nullopt;
            }
            return from_micros(r[0][0].as<std::int64_t>());
        });
}

struct WebhookWakeups::Listener : pqxx::notification_receiver {
    explicit Listener(pqxx::connection& c) : pqxx::notification_receiver(c, "ctquota_webhook") {}
    void operator()(const std::string&, int) override { woken = true; }
    bool woken = false;
};

WebhookWakeups::WebhookWakeups(std::string url) : url_(std::move(url)) {}

WebhookWakeups::~WebhookWakeups() {
    listener_.reset();  // unregisters from conn_, so it goes first
    conn_.reset();
}

bool WebhookWakeups::wait(std::chrono::milliseconds d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    try {
        if (!conn_) {
            conn_ = std::make_unique<pqxx::connection>(url_);
            listener_ = std::make_unique<Listener>(*conn_);
        }
        listener_->woken = false;
        conn_->await_notification(us / 1'000'000, us % 1'000'000);
        return listener_->woken;
    } catch (const std::exception&) {
        listener_.reset();
        conn_.reset();
        std::this_thread::sleep_for(d);
        return true;
    }
}

}  // namespace ctquota::store
