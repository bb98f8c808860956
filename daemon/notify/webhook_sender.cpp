#include "notify/webhook_sender.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include "core/hex.hpp"
#include "notify/http_post.hpp"

namespace ctquota::notify {
namespace {

constexpr auto kWakeSlice = std::chrono::milliseconds(100);
constexpr auto kWarnEvery = std::chrono::seconds(30);
constexpr auto kLeaseMargin = std::chrono::seconds(30);

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
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

WebhookSender::WebhookSender(WebhookSenderOptions options, metrics::Metrics& metrics)
    : options_(std::move(options)),
      metrics_(metrics),
      outbox_(options_.gateway_id, options_.urls, options_.backoff) {}

WebhookSender::~WebhookSender() {
    stop();
}

void WebhookSender::start() {
    for (const auto& receiver : options_.urls) {
        nudged_.push_back(std::make_unique<std::atomic<bool>>(false));
        threads_.emplace_back([this, receiver] { run(receiver); });
    }
    spdlog::info("webhooks: delivering gateway {}'s events to {} receiver(s), one thread each",
                 options_.gateway_id, options_.urls.size());
}

void WebhookSender::stop() {
    if (threads_.empty()) {
        return;
    }
    stopping_ = true;
    for (auto& t : threads_) {
        t.join();
    }
    threads_.clear();
    spdlog::info("webhooks: stopped ({} delivered, {} failed attempts)",
                 metrics_.webhooks_delivered.load(), metrics_.webhook_failures.load());
}

void WebhookSender::nudge() {
    for (auto& n : nudged_) {
        *n = true;
    }
}

void WebhookSender::run(const std::string& receiver) {
    const auto index = static_cast<std::size_t>(
        std::find(options_.urls.begin(), options_.urls.end(), receiver) - options_.urls.begin());
    auto& nudged = *nudged_.at(index);
    store::WebhookWakeups wakeups(options_.database_url);
    std::optional<store::Database> db;
    auto next_warning = std::chrono::steady_clock::now();
    while (!stopping_) {
        bool busy = false;
        try {
            if (!db) {
                db.emplace(options_.database_url);
            }
            busy = deliver_batch(*db, receiver);
        } catch (const store::DatabaseError& e) {
            const auto now = std::chrono::steady_clock::now();
            if (now >= next_warning) {
                spdlog::warn("webhooks ({}): database error ({}); retrying every {} ms", receiver,
                             e.what(), options_.poll.count());
                next_warning = now + kWarnEvery;
            }
        }
        if (!busy) {
            sleep_until_woken(wakeups, nudged);
        }
    }
}

void WebhookSender::sleep_until_woken(store::WebhookWakeups& wakeups, std::atomic<bool>& nudged) {
    const auto deadline = std::chrono::steady_clock::now() + options_.poll;
    while (!stopping_ && !nudged.exchange(false) && std::chrono::steady_clock::now() < deadline) {
        if (wakeups.wait(kWakeSlice)) {
            return;
        }
    }
}

bool WebhookSender::deliver_batch(store::Database& db, const std::string& receiver) {
    const auto lease = options_.timeout + kLeaseMargin;
    const auto due = outbox_.claim(db, options_.batch, lease, receiver);
    for (const auto& d : due) {
        if (stopping_) {
            break;  // the rest are claimed again when their lease ends
        }
        const auto error = post(d, receiver);
        if (error.empty()) {
            outbox_.mark_delivered(db, d.id);
            ++metrics_.webhooks_delivered;
            spdlog::info("webhooks: delivered {} (event {}, {}) to {} at attempt {}", d.id,
                         d.event_id.value_or(0), d.kind, receiver, d.attempts);
        } else {
            outbox_.mark_failed(db, d, error);
            ++metrics_.webhook_failures;
            spdlog::warn("webhooks: delivery {} to {} failed at attempt {}: {}; next in {} ms",
                         d.id, receiver, d.attempts, error,
                         store::webhook_retry_delay(d.attempts, options_.backoff).count());
        }
    }
    return due.size() == options_.batch;
}

std::string WebhookSender::post(const store::WebhookDelivery& d, const std::string& receiver) {
    // The destination is the configured receiver; the row only names it.
    const PostRequest request{
        receiver,
        {{"X-Ctquota-Signature", webhook_signature(options_.secret, unix_now(), d.id, d.body)},
         {"X-Ctquota-Delivery", std::to_string(d.id)},
         {"X-Ctquota-Event", d.kind},
         {"User-Agent", "ctquotad/0.1"}},
        d.body,
        "application/json"};
    const auto result = http_post(request, {options_.timeout, options_.max_answer_header_bytes});
    if (!result.status) {
        return result.error;
    }
    if (*result.status < 200 || *result.status > 299) {
        return "answered HTTP " + std::to_string(*result.status);
    }
    return {};
}

}  // namespace ctquota::notify
