#include "sinks/sink_channel.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace ctquota::sinks {
namespace {

constexpr auto kDropLogEvery = std::chrono::minutes(1);
constexpr auto kFirstRetry = std::chrono::milliseconds(100);

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::size_t records_in(const std::vector<RecordBatch>& batches) {
    std::size_t n = 0;
    for (const auto& b : batches) {
        n += b->size();
    }
    return n;
}

}  // namespace

SinkChannel::SinkChannel(std::unique_ptr<RecordSink> sink, ChannelOptions options,
                         metrics::SinkMetrics& metrics)
    : sink_(std::move(sink)), options_(options), metrics_(metrics) {
    metrics_.enabled = true;
}

SinkChannel::~SinkChannel() {
    stop(std::chrono::seconds(0));
}

void SinkChannel::start() {
    thread_ = std::thread([this] { loop(); });
}

bool SinkChannel::push(const RecordBatch& batch) {
    std::unique_lock lock(mu_);
    if (stopping_ || queued_ + batch->size() > options_.capacity) {
        metrics_.dropped += batch->size();
        log_drops();
        return false;
    }
    queue_.push_back(batch);
    queued_ += batch->size();
    metrics_.queued = queued_;
    lock.unlock();
    wake_.notify_one();
    return true;
}

// Under mu_. At most once a minute, with what was dropped since the last line.
void SinkChannel::log_drops() {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_drop_log_) {
        return;
    }
    const auto dropped = metrics_.dropped.load();
    spdlog::warn(
        "flow records: the {} sink's queue is full ({} records); dropped {} records since "
        "the last report (the sink is slow or failing; the totals are not affected)",
        metrics_.name(), options_.capacity, dropped - drops_logged_);
    drops_logged_ = dropped;
    next_drop_log_ = now + kDropLogEvery;
}

void SinkChannel::stop(std::chrono::nanoseconds grace) {
    {
        std::lock_guard lock(mu_);
        if (!stopping_) {
            stopping_ = true;
            deadline_ = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(grace);
        }
    }
    wake_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

bool SinkChannel::take(std::vector<RecordBatch>& out) {
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, options_.tick, [this] { return stopping_ || queued_ > 0; });
    if (queued_ > 0 && queued_ < options_.batch_records && !stopping_) {
        wake_.wait_for(lock, options_.linger,
                       [this] { return stopping_ || queued_ >= options_.batch_records; });
    }
    if (queue_.empty()) {
        return !stopping_;
    }
    // About batch_records at a time (at least one batch), so one write stays
    // short however long the backlog grew while the sink was away.
    std::size_t taken = 0;
    while (!queue_.empty() &&
           (taken == 0 || taken + queue_.front()->size() <= options_.batch_records)) {
        taken += queue_.front()->size();
        out.push_back(std::move(queue_.front()));
        queue_.pop_front();
    }
    queued_ -= taken;
    metrics_.queued = queued_;
    return true;
}

// Counted always; logged at most once a minute for the periodic work (it
// runs every tick, also while a database is down), each time for a write
// (retried with backoff).
void SinkChannel::failed(const char* what, const std::exception& e, bool periodic) {
    ++metrics_.errors;
    metrics_.set_last_error(e.what(), unix_now());
    const auto now = std::chrono::steady_clock::now();
    if (periodic && now < next_tick_error_log_) {
        return;
    }
    if (periodic) {
        next_tick_error_log_ = now + kDropLogEvery;
    }
    spdlog::warn("flow records: the {} sink failed to {}: {}", metrics_.name(), what, e.what());
}

bool SinkChannel::write(const std::vector<RecordBatch>& batches) {
    try {
        sink_->write(batches);
    } catch (const std::exception& e) {
        failed("write", e, false);
        return false;
    }
    metrics_.written += records_in(batches);
    return true;
}

void SinkChannel::loop() {
    std::vector<RecordBatch> held;  // taken from the queue, not written yet
    auto backoff = kFirstRetry;
    auto next_tick = std::chrono::steady_clock::now() + options_.tick;
    while (true) {
        if (held.empty() && !take(held)) {
            break;
        }
        if (!held.empty()) {
            if (write(held)) {
                held.clear();
                backoff = kFirstRetry;
            } else {
                std::unique_lock lock(mu_);
                if (stopping_ && std::chrono::steady_clock::now() >= deadline_) {
                    break;
                }
                // Retry pacing; stop() cuts it short, its deadline ends it.
                const auto until = std::chrono::steady_clock::now() + backoff;
                wake_.wait_until(lock, stopping_ ? std::min(until, deadline_) : until);
                backoff = std::min(backoff * 2, options_.retry_max);
            }
        }
        if (std::chrono::steady_clock::now() >= next_tick) {
            try {
                sink_->tick();
            } catch (const std::exception& e) {
                failed("do its periodic work", e, true);
            }
            next_tick = std::chrono::steady_clock::now() + options_.tick;
        }
    }
    std::lock_guard lock(mu_);
    const auto lost = records_in(held) + queued_;
    if (lost > 0) {
        metrics_.dropped += lost;
        spdlog::error("flow records: the {} sink could not write {} records before exiting",
                      metrics_.name(), lost);
    }
}

}  // namespace ctquota::sinks
