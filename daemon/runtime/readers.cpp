#include "runtime/readers.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#include "conntrack/dump_socket.hpp"

namespace ctquota::runtime {
namespace {

constexpr std::size_t kCoalesceBelow = 64;
constexpr auto kCoalesce = std::chrono::milliseconds(2);

}  // namespace

Readers::Readers(const ConntrackConfig& config, SampleQueue& queue, metrics::Metrics& metrics)
    : config_(config), queue_(queue), metrics_(metrics), events_(config.event_buffer_bytes) {
    metrics_.event_buffer_bytes = events_.buffer_bytes();
    if (events_.buffer_bytes() < config.event_buffer_bytes) {
        spdlog::warn(
            "event socket buffer is {} bytes, less than the {} asked for (rmem_max caps it; run as "
            "root or raise net.core.rmem_max): bursts may overrun it",
            events_.buffer_bytes(), config.event_buffer_bytes);
    } else {
        spdlog::info("event socket buffer: {} bytes", events_.buffer_bytes());
    }
}

Readers::~Readers() {
    stop();
}

void Readers::start() {
    if (config_.reliable_events) {
        // Not before: while start-up waits for the database nobody reads, and
        // the kernel would keep every dying entry for us meanwhile.
        events_.enable_reliable_delivery();
    }
    metrics_.reader_running = true;
    event_thread_ = std::thread([this] { event_loop(); });
    dump_thread_ = std::thread([this] { dump_loop(); });
}

void Readers::stop() {
    stopping_ = true;
    wake_.notify_all();
    if (event_thread_.joinable()) {
        event_thread_.join();
    }
    if (dump_thread_.joinable()) {
        dump_thread_.join();
    }
    metrics_.reader_running = false;
}

void Readers::request_resync() {
    {
        std::lock_guard lock(mu_);
        resync_requested_ = true;
    }
    wake_.notify_all();
}

void Readers::event_loop() {
    std::vector<core::FlowSample> batch;
    while (!stopping_) {
        batch.clear();
        const auto status = events_.read(batch, 200);
        if (status == conntrack::ReadStatus::Overrun) {
            const auto n = ++metrics_.enobufs;
            const auto size = events_.grow(config_.max_event_buffer_bytes);
            metrics_.event_buffer_bytes = size;
            spdlog::warn("conntrack events lost (ENOBUFS #{}); buffer now {} bytes; resyncing", n,
                         size);
            request_resync();
            continue;
        }
        if (status == conntrack::ReadStatus::Error) {
            spdlog::error("reading conntrack events failed: {}",
                          std::strerror(events_.last_errno()));
            std::this_thread::sleep_for(
                std::chrono::milliseconds(100));  // no busy loop on a broken socket
            continue;
        }
        metrics_.events_read = events_.stats().messages;
        metrics_.events_unparsed = events_.stats().unparsed;
        if (batch.empty()) {
            continue;
        }
        const auto n = batch.size();
        hand_off(std::move(batch));
        if (n < kCoalesceBelow) {
            // A trickle of events: let a few milliseconds' worth gather in the
            // (large) socket buffer, so each wakeup carries a batch instead of
            // one event. Costs at most kCoalesce of latency; bursts never wait.
            std::this_thread::sleep_for(kCoalesce);
        }
        batch = {};
    }
}

void Readers::hand_off(std::vector<core::FlowSample>&& batch) {
    const auto n = batch.size();
    QueueItem item{QueueItem::Kind::Samples, std::move(batch), 0, false};
    if (config_.reliable_events) {
        // The kernel holds the entries whose DESTROY we have not read: waiting
        // here delays events, dropping them would lose the flows for good.
        bool waited = false;
        queue_.push_wait(std::move(item), SampleQueue::Lane::Events, &waited);
        if (waited) {
            ++metrics_.queue_full_waits;
        }
        return;
    }
    if (!queue_.try_push(std::move(item))) {
        // Without reliable delivery a waiting reader makes the kernel drop
        // events, uncounted. Drop, count, resync.
        ++metrics_.queue_overflows;
        metrics_.samples_dropped += n;
        spdlog::warn("accounting queue full: dropped {} events; resyncing", n);
        request_resync();
    }
}

bool Readers::dump_once(std::uint64_t seq) {
    constexpr auto kDump = SampleQueue::Lane::Dump;
    if (!queue_.push_wait(QueueItem{QueueItem::Kind::DumpBegin, {}, seq, false}, kDump)) {
        return false;
    }
    conntrack::DumpSocket socket;
    const auto result = socket.dump([this](std::vector<core::FlowSample>&& samples) {
        queue_.push_wait(QueueItem{QueueItem::Kind::Samples, std::move(samples), 0, false}, kDump);
    });
    ++metrics_.dumps;
    metrics_.dump_entries += result.entries;
    if (!result.complete) {
        ++metrics_.dumps_incomplete;
        spdlog::warn("conntrack dump {} incomplete after {} entries ({})", seq, result.entries,
                     result.error != 0 ? std::strerror(result.error) : "table changed during dump");
    }
    return queue_.push_wait(QueueItem{QueueItem::Kind::DumpEnd, {}, seq, result.complete}, kDump);
}

void Readers::dump_loop() {
    std::uint64_t seq = 0;
    while (!stopping_) {
        try {
            if (!dump_once(++seq)) {
                return;
            }
        } catch (const std::exception& e) {
            spdlog::error("conntrack dump failed: {}", e.what());
        }
        std::unique_lock lock(mu_);
        wake_.wait_for(lock, config_.poll_interval,
                       [this] { return stopping_.load() || resync_requested_; });
        if (resync_requested_) {
            resync_requested_ = false;
            ++metrics_.resyncs;
        }
    }
}

}  // namespace ctquota::runtime
