#include "runtime/flusher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/spill_codec.hpp"

namespace ctquota::runtime {
namespace {

constexpr std::size_t kMinSnapshotBytes = 1 << 20;
constexpr auto kIndexRefresh = std::chrono::seconds(2);

}  // namespace

Flusher::Flusher(const AccountingConfig& config, const core::Clock& clock, store::Database& db,
                 Accountant& accountant, metrics::Metrics& metrics)
    : config_(config),
      clock_(clock),
      db_(db),
      usage_store_(db, config.gateway_id),
      subscribers_(db),
      accountant_(accountant),
      metrics_(metrics) {}

Flusher::~Flusher() {
    stopping_ = true;
    wake_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

void Flusher::refresh_index(bool force) {
    auto fingerprint = subscribers_.bindings_fingerprint();
    if (!force && fingerprint == bindings_fingerprint_) {
        return;
    }
    auto bindings = subscribers_.load_bindings(clock_.now());
    const auto n = bindings.size();
    accountant_.set_index(std::make_shared<const core::SubscriberIndex>(std::move(bindings)));
    bindings_fingerprint_ = std::move(fingerprint);
    metrics_.subscriber_bindings = n;
    spdlog::info("subscriber index loaded: {} bindings", n);
}

void Flusher::use_journal(EventJournal* journal, std::uint64_t spill_after_bytes) {
    journal_ = journal;
    spill_after_bytes_ = spill_after_bytes;
    if (journal_ != nullptr) {
        usage_store_.set_journal(journal_->id());
    }
}

void Flusher::start() {
    thread_ = std::thread([this] { loop(); });
}

bool Flusher::want_snapshot() const {
    // Compact the checkpoint log once the deltas outweigh a fresh snapshot.
    const auto since = usage_store_.checkpoint_bytes_since_snapshot();
    return first_flush_ ||
           since > std::max(kMinSnapshotBytes, 2 * usage_store_.last_snapshot_bytes());
}

bool Flusher::settle_in_doubt() {
    if (!in_doubt_) {
        return true;
    }
    const auto committed = usage_store_.resolve_in_doubt();
    if (!committed) {
        ++metrics_.db_errors;
        spdlog::warn("the flush in doubt is still unresolved; holding its {} subscriber-periods",
                     in_doubt_->usage.periods.size());
        return false;
    }
    spdlog::warn("the flush in doubt {}", *committed ? "had committed" : "had not committed");
    if (*committed) {
        // When it was taken is not kept: it tells the engine nothing new.
        flushed(*in_doubt_, std::chrono::steady_clock::now(), {});
    } else {
        accountant_.give_back(*in_doubt_);
    }
    in_doubt_.reset();
    return true;
}

bool Flusher::flush_once() {
    if (!settle_in_doubt()) {
        return false;
    }
    std::vector<core::FlowKey> tombstones;  // with the batch when it may have to be spilled
    const bool may_spill = spill_due();
    const auto started = std::chrono::steady_clock::now();
    const auto batch = accountant_.take(want_snapshot(), may_spill ? &tombstones : nullptr);
    if (batch.empty()) {
        if (on_flushed_) {
            on_flushed_({}, started);  // all counted before `started` is stored
        }
        return true;
    }
    try {
        usage_store_.flush(batch);
    } catch (const std::exception& e) {
        ++metrics_.db_errors;
        ++metrics_.flush_failures;
        metrics_.database_ok = false;
        ++failing_since_;
        if (dynamic_cast<const store::InDoubtError*>(&e) != nullptr) {
            ++metrics_.flushes_in_doubt;
            in_doubt_ = batch;  // merged into nothing: it may have been written
        } else {
            accountant_.give_back(batch);
            if (may_spill) {
                spill(batch, std::move(tombstones));
            }
        }
        spdlog::error("flush failed, keeping {} subscriber-periods in memory: {}",
                      batch.usage.periods.size(), e.what());
        return false;
    }
    flushed(batch, started, started);
    return true;
}

void Flusher::flushed(const core::FlushBatch& batch, std::chrono::steady_clock::time_point started,
                      std::chrono::steady_clock::time_point taken) {
    accountant_.committed(batch);
    if (journal_ != nullptr) {
        journal_->drop_spill();  // this flush carried all of it
        journal_->covered(batch.journal_position);
        metrics_.journal_disk_bytes = journal_->stats().disk_bytes.load();
    }
    metrics_.observe_flush(std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started));
    ++metrics_.flushes;
    metrics_.database_ok = true;
    if (failing_since_ != 0) {
        spdlog::info("database writes succeed again after {} failed flushes", failing_since_);
        failing_since_ = 0;
    }
    first_flush_ = false;
    if (on_flushed_) {
        std::vector<core::SubscriberId> changed;
        changed.reserve(batch.usage.periods.size());
        for (const auto& p : batch.usage.periods) {
            changed.push_back(p.subscriber);
        }
        on_flushed_(changed, taken);
    }
}

bool Flusher::spill_due() const {
    return journal_ != nullptr && failing_since_ > 0 &&
           journal_->uncovered_bytes() >= spill_after_bytes_;
}

// The batch that failed is everything since the last commit: on disk, it
// stands for the journal before its position, which can go.
void Flusher::spill(const core::FlushBatch& batch, std::vector<core::FlowKey> tombstones) {
    const core::Spill s{journal_->id(), usage_store_.last_token(), batch, std::move(tombstones)};
    try {
        journal_->write_spill(core::encode_spill(s));
    } catch (const JournalError& e) {
        ++metrics_.journal_errors;
        spdlog::error("{}: the journal keeps growing while the database is away", e.what());
        return;
    }
    const auto before = journal_->stats().disk_bytes.load();
    journal_->covered(batch.journal_position);
    metrics_.journal_disk_bytes = journal_->stats().disk_bytes.load();
    ++metrics_.journal_spills;
    spdlog::warn(
        "database still away: {} hourly rows and {} checkpoint changes spilled ({} bytes); the "
        "journal went from {} to {} bytes",
        batch.usage.hours.size(),
        s.batch.checkpoint.upserts.size() + s.batch.checkpoint.removals.size(),
        journal_->stats().spill_bytes.load(), before, journal_->stats().disk_bytes.load());
}

void Flusher::loop() {
    auto backoff = config_.flush_interval;
    auto next_index_refresh = std::chrono::steady_clock::now() + kIndexRefresh;
    while (!stopping_) {
        const bool ok = flush_once();
        backoff = ok ? config_.flush_interval
                     : std::min(backoff * 2, std::chrono::nanoseconds(config_.retry_max));
        if (index_dirty_.exchange(false) ||
            (ok && std::chrono::steady_clock::now() >= next_index_refresh)) {
            try {
                refresh_index(false);
            } catch (const std::exception& e) {
                ++metrics_.db_errors;
                spdlog::warn("could not refresh the subscriber index: {}", e.what());
            }
            next_index_refresh = std::chrono::steady_clock::now() + kIndexRefresh;
        }
        std::unique_lock lock(mu_);
        wake_.wait_for(lock, backoff, [this] { return stopping_.load() || index_dirty_.load(); });
    }
}

bool Flusher::stop_and_flush(std::chrono::nanoseconds grace) {
    stopping_ = true;
    wake_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
    const auto deadline = std::chrono::steady_clock::now() + grace;
    auto wait = std::chrono::milliseconds(100);
    while (!flush_once()) {
        if (std::chrono::steady_clock::now() + wait > deadline) {
            if (journal_ != nullptr) {
                spdlog::error(
                    "could not write the last totals before exiting; the next start replays "
                    "them from the journal (and a spill, if one was written)");
            } else {
                spdlog::critical("could not write the last totals before exiting; they are lost");
            }
            return false;
        }
        std::this_thread::sleep_for(wait);  // retry pacing, not synchronisation
        wait = std::min(wait * 2, std::chrono::milliseconds(2000));
    }
    return true;
}

}  // namespace ctquota::runtime
