#include "runtime/accountant.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "sinks/record_stage.hpp"

namespace ctquota::runtime {

Accountant::Accountant(const core::Clock& clock, SampleQueue& queue, metrics::Metrics& metrics)
    : clock_(clock), queue_(queue), metrics_(metrics), accounting_(clock) {}

Accountant::~Accountant() {
    join();
}

void Accountant::restore_ledger(const std::vector<core::CheckpointEntry>& entries) {
    std::lock_guard lock(mu_);
    accounting_.restore_ledger(entries, clock_.now());
    metrics_.flows_tracked = accounting_.ledger().live_flows();
}

void Accountant::set_index(std::shared_ptr<const core::SubscriberIndex> index) {
    std::lock_guard lock(mu_);
    accounting_.set_index(std::move(index));
}

void Accountant::set_usage_rules(std::shared_ptr<const core::UsageRules> rules) {
    std::lock_guard lock(mu_);
    accounting_.set_usage_rules(std::move(rules));
}

void Accountant::reserve_flows(std::size_t flows) {
    std::lock_guard lock(mu_);
    accounting_.reserve_flows(flows);
}

void Accountant::replay(const core::FlowSample& sample, std::uint64_t position) {
    std::lock_guard lock(mu_);
    accounting_.apply(sample, clock_.now());
    accounting_.journal_applied(position);
}

void Accountant::restore_spill(const core::FlushBatch& batch,
                               const std::vector<core::FlowKey>& tombstones) {
    std::lock_guard lock(mu_);
    accounting_.restore_spill(batch, tombstones, clock_.now());
}

void Accountant::journal_applied(std::uint64_t position) {
    std::lock_guard lock(mu_);
    accounting_.journal_applied(position);
}

void Accountant::start() {
    thread_ = std::thread([this] { loop(); });
}

void Accountant::join() {
    if (thread_.joinable()) {
        thread_.join();
    }
}

core::FlushBatch Accountant::take(bool checkpoint_snapshot,
                                  std::vector<core::FlowKey>* tombstones) {
    std::lock_guard lock(mu_);
    if (tombstones != nullptr) {
        *tombstones = accounting_.ledger().tombstone_keys();
    }
    return accounting_.take(checkpoint_snapshot);
}

void Accountant::committed(const core::FlushBatch& batch) {
    std::lock_guard lock(mu_);
    accounting_.committed(batch);
}

void Accountant::give_back(const core::FlushBatch& batch) {
    std::lock_guard lock(mu_);
    accounting_.give_back(batch);
}

void Accountant::apply_samples(const std::vector<core::FlowSample>& samples, core::TimePoint now) {
    // Each DESTROY probes tables far larger than the cache: the probes of the
    // samples kAhead further on are started before this one is applied.
    constexpr std::size_t kAhead = 8;
    for (std::size_t i = 0; i < samples.size(); ++i) {
        if (i + kAhead < samples.size()) {
            accounting_.prefetch(samples[i + kAhead]);
        }
        if (records_ == nullptr) {
            accounting_.apply(samples[i], now);
        } else {
            records_->observe(samples[i], accounting_.apply(samples[i], now), accounting_.index());
        }
    }
    if (records_ != nullptr) {
        records_->end_batch();
    }
}

void Accountant::apply(QueueItem& item, core::TimePoint now) {
    switch (item.kind) {
        case QueueItem::Kind::Samples:
            apply_samples(item.samples, now);
            if (item.journal_end != 0) {
                accounting_.journal_applied(item.journal_end);
            }
            metrics_.samples_applied += item.samples.size();
            break;
        case QueueItem::Kind::DumpBegin:
            accounting_.dump_begin(item.seq);
            break;
        case QueueItem::Kind::DumpEnd: {
            const auto lost = accounting_.dump_end(item.seq, item.complete);
            if (records_ != nullptr) {
                records_->dump_end(item.complete);
            }
            if (!lost.empty()) {
                // Never invented: what was credited stays, the rest is reported.
                spdlog::warn(
                    "{} flows vanished without a DESTROY event (lost events or downtime); "
                    "their traffic after the last dump is not counted unless their DESTROY "
                    "still arrives within an hour",
                    lost.size());
            }
            break;
        }
    }
}

// Reads the kernel's map only when the program recorded something since the
// last read (drops are rare outside throttles and blocks): one syscall per batch.
void Accountant::refresh_drops() {
    if (drop_map_ == nullptr) {
        return;
    }
    drops::DropStats stats;
    if (!drop_map_->read_stats(stats)) {
        ++metrics_.drop_read_errors;
        return;
    }
    metrics_.drop_packets = stats.packets;
    metrics_.drop_bytes = stats.bytes;
    metrics_.drop_map_full = stats.map_full;
    if (stats.packets == drops_seen_) {
        return;
    }
    if (!drop_map_->read(drop_records_)) {
        ++metrics_.drop_read_errors;
        spdlog::warn("drops: reading the BPF map failed: {}", std::strerror(errno));
        return;
    }
    drops_seen_ = stats.packets;
    std::lock_guard lock(mu_);
    accounting_.drops().refresh(drop_records_);
}

// After a fresh read of the drops: the DESTROYs of dropped flows that waited
// long enough for packets dropped after them are billed.
void Accountant::settle_finals() {
    std::lock_guard lock(mu_);
    if (accounting_.parked_finals() > 0) {
        accounting_.settle_finals(clock_.now());
        metrics_.drop_late_bytes = accounting_.stats().late_drop_bytes;
    }
}

void Accountant::erase_finished_drops() {
    if (drop_map_ == nullptr) {
        return;
    }
    std::vector<core::FlowKey> keys;
    {
        std::lock_guard lock(mu_);
        keys = accounting_.drops().take_erasures();
    }
    if (!keys.empty() && drop_map_->erase(keys) > 0) {
        ++metrics_.drop_read_errors;
    }
}

void Accountant::publish_stats() {
    const auto& ledger = accounting_.ledger();
    metrics_.flows_tracked = ledger.live_flows();
    metrics_.flows_lost = ledger.stats().lost_flows;
    metrics_.flows_lost_recovered = ledger.stats().lost_recovered;
    metrics_.duplicate_events = ledger.stats().duplicates;
    metrics_.unattributed_bytes = accounting_.stats().unattributed_bytes;
    auto& drops = accounting_.drops();
    metrics_.drop_map_flows = drops.size();
    metrics_.drop_unapplied_bytes = drops.stats().unapplied_bytes;
    metrics_.drop_late_bytes = accounting_.stats().late_drop_bytes;
    metrics_.drop_vanished_flows = drops.stats().vanished_flows;
    metrics_.sample_times_implausible = accounting_.stats().implausible_times;
}

// Traffic that matches no subscriber is stored (usage_unattributed) and
// counted; the log says so at most once a minute, with an example flow.
void Accountant::log_unattributed() {
    constexpr auto kEvery = std::chrono::minutes(1);
    const auto& stats = accounting_.stats();
    const auto now = std::chrono::steady_clock::now();
    if (stats.unattributed_bytes == unattributed_logged_ || now < next_unattributed_log_) {
        return;
    }
    const auto& t = stats.last_unattributed;
    spdlog::warn(
        "{} bytes matched no subscriber since the last report (e.g. {} -> {} proto {}); "
        "stored as unattributed",
        stats.unattributed_bytes - unattributed_logged_, t.src.to_string(), t.dst.to_string(),
        t.l4proto);
    unattributed_logged_ = stats.unattributed_bytes;
    next_unattributed_log_ = now + kEvery;
}

void Accountant::loop() {
    std::deque<QueueItem> items;
    while (true) {
        items.clear();
        const bool open = queue_.pop_all(items, std::chrono::milliseconds(200));
        refresh_drops();
        settle_finals();
        if (!items.empty()) {
            const auto now = clock_.now();
            for (auto& item : items) {
                std::lock_guard lock(mu_);  // per item, so a flush never waits long
                apply(item, now);
            }
            std::lock_guard lock(mu_);
            publish_stats();
            log_unattributed();
        }
        erase_finished_drops();
        if (!open) {
            return;
        }
    }
}

}  // namespace ctquota::runtime
