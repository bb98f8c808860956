#include "notify/webhook_sender.hpp"

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include "core/hex.hpp"

namespace ctquota::notify {
namespace {

constexpr auto kWakeSlice = std::chrono::milliseconds(100);
constexpr auto kWarnEvery = std::chrono::seconds(30);
constexpr auto kLeaseMargin = std::chrono::seconds(30);

// last_error for an HTTP request that got no answer.
std::string describe(httplib::Error error, const std::string& origin) {
    switch (error) {
        case httplib::Error::Connection:
            return "cannot connect to " + origin + " (refused or unreachable)";
        case httplib::Error::ConnectionTimeout:
            return "connecting to " + origin + " timed out";
        case httplib::Error::Read:
            return "no answer from " + origin + " (read failed or timed out)";
        case httplib::Error::Write:
            return "sending to " + origin + " failed";
        case httplib::Error::SSLConnection:
            return "TLS handshake with " + origin + " failed";
        case httplib::Error::SSLServerVerification:
            return "the certificate of " + origin + " is not trusted";
        default:
            return "HTTP request to " + origin + " failed: " + httplib::to_string(error);
    }
}

}  // namespace

std::string webhook_signature(std::string_view secret, std::int64_t unix_seconds,
                              std::int64_t delivery_id, std::string_view body) {
    const std::string t = std::to_string(unix_seconds);
    std::string signed_text = t + "." + std::to_string(delivery_id) + ".";
    signed_text.append(body);
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int len = 0;
    const auto* out = HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                           reinterpret_cast<const unsigned char*>(signed_text.data()),
                           signed_text.size(), mac.data(), &len);
    if (out == nullptr) {
        throw std::runtime_error("HMAC-SHA256 failed");
    }
    return "t=" + t + ",v1=" + core::hex(mac.data(), len);
}

std::optional<WebhookTarget> split_webhook_url(std::string_view url) {
    for (std::string_view scheme : {"http://", "https://"}) {
        if (url.starts_with(scheme)) {
            const auto slash = url.find_first_of("/?", scheme.size());
            if (slash == scheme.size()) {
                return std::nullopt;
            }
            WebhookTarget t{std::string(url.substr(0, slash)),
                            slash == std::string_view::npos ? "/" : std::string(url.substr(slash))};
            if (t.path.front() == '?') {
                t.path.insert(0, "/");
            }
            return t;
        }
    }
    return std::nullopt;
}

WebhookSender::WebhookSender(WebhookSenderOptions options, metrics::Metrics& metrics)
    : options_(std::move(options)),
      metrics_(metrics),
      outbox_(options_.urls, options_.backoff),
      db_(options_.database_url),
      wakeups_(options_.database_url) {}

WebhookSender::~WebhookSender() {
    stop();
}

void WebhookSender::start() {
    thread_ = std::thread([this] { run(); });
    spdlog::info("webhooks: delivering to {} URL(s)", options_.urls.size());
}

void WebhookSender::stop() {
    if (!thread_.joinable()) {
        return;
    }
    stopping_ = true;
    thread_.join();
    spdlog::info("webhooks: stopped ({} delivered, {} failed attempts)",
                 metrics_.webhooks_delivered.load(), metrics_.webhook_failures.load());
}

void WebhookSender::nudge() {
    nudged_ = true;
}

void WebhookSender::run() {
    while (!stopping_) {
        bool busy = false;
        try {
            busy = deliver_batch();
        } catch (const store::DatabaseError& e) {
            const auto now = std::chrono::steady_clock::now();
            if (now >= next_db_warning_) {
                spdlog::warn("webhooks: database error ({}); retrying every {} ms", e.what(),
                             options_.poll.count());
                next_db_warning_ = now + kWarnEvery;
            }
        }
        if (!busy) {
            sleep_until_woken();
        }
    }
}

void WebhookSender::sleep_until_woken() {
    const auto deadline = std::chrono::steady_clock::now() + options_.poll;
    while (!stopping_ && !nudged_.exchange(false) && std::chrono::steady_clock::now() < deadline) {
        if (wakeups_.wait(kWakeSlice)) {
            return;
        }
    }
}

bool WebhookSender::deliver_batch() {
    const auto lease = options_.timeout * 3 + kLeaseMargin;  // connect + write + read
    const auto due = outbox_.claim(db_, options_.batch, lease);
    for (const auto& d : due) {
        if (stopping_) {
            break;  // the rest are claimed again when their lease ends
        }
        const auto error = post(d);
        if (error.empty()) {
            outbox_.mark_delivered(db_, d.id);
            ++metrics_.webhooks_delivered;
            spdlog::info("webhooks: delivered {} (event {}, {}) to {} at attempt {}", d.id,
                         d.event_id.value_or(0), d.kind, d.url, d.attempts);
        } else {
            outbox_.mark_failed(db_, d, error);
            ++metrics_.webhook_failures;
            spdlog::warn("webhooks: delivery {} to {} failed at attempt {}: {}; next in {} ms",
                         d.id, d.url, d.attempts, error,
                         store::webhook_retry_delay(d.attempts, options_.backoff).count());
        }
    }
    return due.size() == options_.batch;
}

std::string WebhookSender::post(const store::WebhookDelivery& d) {
    // Rows are only data: whoever can insert into the outbox must not choose
    // where we send requests signed with our secret.
    if (std::find(options_.urls.begin(), options_.urls.end(), d.url) == options_.urls.end()) {
        return "not a receiver in [webhooks] urls: not sent";
    }
    const auto target = split_webhook_url(d.url);
    if (!target) {
        return "not an http:// or https:// URL";
    }
    httplib::Client client(target->origin);
    if (!client.is_valid()) {
        return "cannot make a client for " + target->origin;
    }
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(options_.timeout);
    const auto usecs =
        std::chrono::duration_cast<std::chrono::microseconds>(options_.timeout - secs);
    client.set_connection_timeout(secs.count(), usecs.count());
    client.set_read_timeout(secs.count(), usecs.count());
    client.set_write_timeout(secs.count(), usecs.count());
    client.set_follow_location(false);
    const httplib::Headers headers = {
        {"X-Ctquota-Signature",
         webhook_signature(options_.secret,
                           std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count(),
                           d.id, d.body)},
        {"X-Ctquota-Delivery", std::to_string(d.id)},
        {"X-Ctquota-Event", d.kind},
        {"User-Agent", "ctquotad/0.1"},
    };
    const auto res = client.Post(target->path, headers, d.body, "application/json");
    if (!res) {
        return describe(res.error(), target->origin);
    }
    if (res->status < 200 || res->status > 299) {
        return "answered HTTP " + std::to_string(res->status);
    }
    return {};
}

}  // namespace ctquota::notify
