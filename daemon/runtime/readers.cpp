#include "runtime/readers.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "conntrack/dump_socket.hpp"
#include "runtime/fd_store.hpp"

namespace ctquota::runtime {
namespace {

constexpr auto kCoalesce = std::chrono::milliseconds(2);
// Events handed to the accountant at once, at most (several full reads).
constexpr std::size_t kHandOffAt = 1024;
constexpr auto kJournalErrorLogEvery = std::chrono::seconds(60);
constexpr auto kDeferStep = std::chrono::seconds(1);

std::int64_t ns_of(core::TimePoint t) {
    return t.time_since_epoch().count();
}

}  // namespace

Readers::Readers(const ConntrackConfig& config, SampleQueue& queue, metrics::Metrics& metrics,
                 const core::Clock& clock, EventJournal* journal, int adopt_fd)
    : config_(config),
      queue_(queue),
      metrics_(metrics),
      clock_(clock),
      journal_(journal),
      events_(config.event_buffer_bytes, adopt_fd) {
    metrics_.event_buffer_bytes = events_.buffer_bytes();
    if (journal_ != nullptr) {
        events_.land_in(journal_->landing_area(conntrack::EventLanding::bytes_needed()));
    }
    if (events_.adopted()) {
        // The run that read this socket left reliable delivery as it wanted
        // it. Without a journal nothing reads it before go_live (start-up may
        // wait long for the database): the kernel would keep every dying
        // entry that does not fit for us meanwhile, filling its table, so it
        // is off until start_event_thread. With a journal reading starts at
        // once: it stays on, and nothing held for the previous run is let go.
        events_.set_reliable_delivery(config.reliable_events && journal_ != nullptr);
    }
    if (events_.buffer_bytes() < config.event_buffer_bytes) {
        spdlog::warn(
            "event socket buffer is {} bytes, less than the {} asked for (rmem_max caps it; run as "
            "root or raise net.core.rmem_max): bursts may overrun it",
            events_.buffer_bytes(), config.event_buffer_bytes);
    } else {
        spdlog::info("event socket buffer: {} bytes{}", events_.buffer_bytes(),
                     events_.adopted() ? " (the socket of the previous run, handed back)" : "");
    }
}

Readers::~Readers() {
    stop();
}

void Readers::start_event_thread() {
    if (event_thread_.joinable()) {
        return;
    }
    if (config_.reliable_events) {
        // Not before: while nobody reads, the kernel would keep every dying
        // entry for us.
        events_.set_reliable_delivery(true);
    }
    event_thread_ = std::thread([this] { event_loop(); });
}

void Readers::start_reading() {
    if (journal_ != nullptr) {
        start_event_thread();  // without a journal, nothing may be read before go_live
    }
}

std::uint64_t Readers::go_live() {
    {
        std::lock_guard lock(mu_);
        live_wanted_ = true;
    }
    start_event_thread();
    std::uint64_t from = 0;
    {
        std::unique_lock lock(mu_);
        wake_.wait(lock, [this] { return live_ || stopping_.load(); });
        from = live_from_;
    }
    metrics_.reader_running = true;
    dump_thread_ = std::thread([this] { dump_loop(); });
    return from;
}

void Readers::stop_applying() {
    metrics_.reader_running = false;
    {
        std::unique_lock lock(mu_);
        live_wanted_ = false;
        stop_dumps_ = true;
        if (journal_ != nullptr && event_thread_.joinable()) {
            wake_.notify_all();
            wake_.wait(lock, [this] { return !live_ || stopping_.load(); });
        }
    }
    wake_.notify_all();
    if (dump_thread_.joinable()) {
        dump_thread_.join();
    }
    if (journal_ == nullptr) {
        stop();
    }
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

void Readers::keep_event_socket() {
    if (std::getenv("NOTIFY_SOCKET") == nullptr) {
        spdlog::info(
            "no service manager to keep the event socket (NOTIFY_SOCKET unset): events queued "
            "in it when ctquotad dies, and events of the time it is down, are lost");
        return;
    }
    if (store_fd(events_.fd(), kEventSocketName)) {
        spdlog::info("event socket handed to the service manager's fd store");
    } else {
        spdlog::warn(
            "could not hand the event socket to the service manager ({}): events queued "
            "in it when ctquotad dies are lost",
            std::strerror(errno));
    }
}

void Readers::request_resync() {
    {
        std::lock_guard lock(mu_);
        resync_requested_ = true;
    }
    wake_.notify_all();
}

void Readers::follow_mode() {
    std::lock_guard lock(mu_);
    if (live_wanted_ != live_) {
        live_ = live_wanted_;
        live_from_ = journal_ != nullptr ? journal_->end() : 0;
        wake_.notify_all();
    }
}

void Readers::stamp_events(std::span<core::FlowSample> samples) const {
    // Conntrack stamps with the kernel's realtime clock; usage is bucketed on
    // the daemon's (which may carry the operator's offset).
    const auto now = clock_.now();
    const auto offset = ns_of(now) - ns_of(core::SystemClock().now());
    for (auto& s : samples) {
        const bool stamped = s.stop_ns != 0 && s.stop_ns >= s.start_ns;
        s.as_of_ns = stamped ? static_cast<std::int64_t>(s.stop_ns) + offset : ns_of(now);
    }
}

bool Readers::persist(std::span<core::FlowSample> samples) {
    stamp_events(samples);
    try {
        journal_end_ = journal_->append(samples);
        return true;
    } catch (const JournalError& e) {
        ++metrics_.journal_errors;
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_journal_error_log_) {
            spdlog::error("{}: {}", e.what(),
                          live_ ? "events are counted but not journaled (a crash before the "
                                  "next flush would lose them)"
                                : "events stay in the socket until the journal works again");
            next_journal_error_log_ = now + kJournalErrorLogEvery;
        }
        // Live, counting goes on without the journal; before go_live (or after
        // stop_applying) the journal is the only place an event could go.
        return live_;
    }
}

void Readers::on_overrun() {
    const auto n = ++metrics_.enobufs;
    const auto size = events_.grow(config_.max_event_buffer_bytes);
    metrics_.event_buffer_bytes = size;
    if (config_.reliable_events) {
        spdlog::warn(
            "conntrack event socket overran (#{}; reliable delivery: the kernel holds the events "
            "back and sends them again); buffer now {} bytes; resyncing",
            n, size);
    } else {
        spdlog::warn("conntrack events lost (ENOBUFS #{}); buffer now {} bytes; resyncing", n,
                     size);
    }
    request_resync();
}

Readers::ReadEnd Readers::read_events(std::vector<core::FlowSample>& batch,
                                      const conntrack::EventSocket::Persist& persist_fn) {
    while (!stopping_ && batch.size() < kHandOffAt) {
        const std::size_t before = batch.size();
        // The first read waits for events; the next ones only take what is there.
        const auto status = events_.read(batch, batch.empty() ? 200 : 0, persist_fn);
        update_read_metrics();
        switch (status) {
            case conntrack::ReadStatus::Overrun:
                on_overrun();
                return ReadEnd::Drained;
            case conntrack::ReadStatus::Held:
                return ReadEnd::Paused;  // the journal is failing
            case conntrack::ReadStatus::Error:
                spdlog::error("reading conntrack events failed: {}",
                              std::strerror(events_.last_errno()));
                return ReadEnd::Paused;  // no busy loop on a broken socket
            case conntrack::ReadStatus::Timeout:
                return ReadEnd::Drained;
            case conntrack::ReadStatus::Ok:
                break;
        }
        if (batch.size() - before < conntrack::EventSocket::kMaxPerRead) {
            return ReadEnd::Drained;  // a read short of a full one emptied the socket
        }
    }
    return ReadEnd::Full;
}

void Readers::update_read_metrics() {
    metrics_.events_read = events_.stats().messages;
    metrics_.events_unparsed = events_.stats().unparsed;
    if (journal_ != nullptr) {
        metrics_.journal_records = journal_->stats().records.load();
        metrics_.journal_bytes = journal_->stats().bytes.load();
        metrics_.journal_disk_bytes = journal_->stats().disk_bytes.load();
    }
}

void Readers::event_loop() {
    std::vector<core::FlowSample> batch;
    conntrack::EventSocket::Persist persist_fn;
    if (journal_ != nullptr) {
        persist_fn = [this](std::span<core::FlowSample> s) { return persist(s); };
    }
    while (!stopping_) {
        follow_mode();
        if (journal_ == nullptr && !live_) {
            return;  // stop_applying without a journal: nothing may be read any more
        }
        batch.clear();
        // Under load one hand-off (one wake-up of the accountant) carries
        // the reads of several batches.
        const ReadEnd end = read_events(batch, persist_fn);
        const bool read_any = !batch.empty();
        if (read_any) {
            if (journal_ == nullptr) {
                stamp_events(batch);
            }
            if (live_) {
                hand_off(std::move(batch), journal_end_);
            }
            batch = {};
        }
        if (end == ReadEnd::Paused) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        } else if (end == ReadEnd::Drained && read_any) {
            // The socket is empty: let a few milliseconds' worth gather in the
            // (large) socket buffer, so each wake-up carries a batch instead of
            // a few events. Costs at most kCoalesce of latency; a socket that
            // still holds events is read on without a pause.
            std::this_thread::sleep_for(kCoalesce);
        }
    }
}

void Readers::hand_off(std::vector<core::FlowSample>&& batch, std::uint64_t journal_end) {
    const auto n = batch.size();
    QueueItem item{QueueItem::Kind::Samples, std::move(batch), 0, false, journal_end};
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
        const auto now = ns_of(clock_.now());  // progress belongs to when it was read
        for (auto& s : samples) {
            s.as_of_ns = now;
        }
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

void Readers::wait_for_dump(std::unique_lock<std::mutex>& lock) {
    using std::chrono::steady_clock;
    const auto woken = [this] { return stopping_.load() || stop_dumps_ || resync_requested_; };
    // The rate is measured over the interval's last step.
    const auto step = std::min<std::chrono::nanoseconds>(kDeferStep, config_.poll_interval / 2);
    if (wake_.wait_for(lock, config_.poll_interval - step, woken)) {
        return;
    }
    const auto latest = steady_clock::now() + step + config_.dump_defer_max;
    bool deferred = false;
    while (true) {
        const auto events = metrics_.events_read.load();
        const auto from = steady_clock::now();
        if (wake_.wait_for(lock, step, woken)) {
            return;
        }
        const auto now = steady_clock::now();
        const double seconds = std::chrono::duration<double>(now - from).count();
        const auto rate = static_cast<double>(metrics_.events_read.load() - events) / seconds;
        if (config_.dump_defer_events_per_s == 0 ||
            rate < static_cast<double>(config_.dump_defer_events_per_s) || now >= latest) {
            return;
        }
        if (!deferred) {
            deferred = true;
            ++metrics_.dumps_deferred;
            spdlog::debug("dump deferred: {:.0f} DESTROY events a second", rate);
        }
    }
}

void Readers::dump_loop() {
    std::uint64_t seq = 0;
    const auto done = [this] { return stopping_.load() || stop_dumps_; };
    while (true) {
        {
            std::lock_guard lock(mu_);
            if (done()) {
                return;
            }
        }
        try {
            if (!dump_once(++seq)) {
                return;
            }
        } catch (const std::exception& e) {
            spdlog::error("conntrack dump failed: {}", e.what());
        }
        std::unique_lock lock(mu_);
        wait_for_dump(lock);
        if (resync_requested_) {
            resync_requested_ = false;
            ++metrics_.resyncs;
        }
    }
}

}  // namespace ctquota::runtime
