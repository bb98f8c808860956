#include "sinks/record_stage.hpp"

namespace ctquota::sinks {
namespace {

// What happened since `before`; a counter that went backwards reports everything.
core::Counters since(const core::Counters& now, const core::Counters& before) {
    if (now.bytes < before.bytes || now.packets < before.packets) {
        return now;
    }
    return {now.bytes - before.bytes, now.packets - before.packets};
}

bool is_final(core::LedgerOutcome o) {
    return o == core::LedgerOutcome::Final || o == core::LedgerOutcome::FinalUnseen;
}

}  // namespace

RecordStage::RecordStage(std::chrono::nanoseconds interim_interval, const core::Clock& clock,
                         Publish publish)
    : interval_ns_(interim_interval.count()), clock_(clock), publish_(std::move(publish)) {}

std::int64_t RecordStage::now_ns() {
    if (batch_now_ == 0) {
        batch_now_ = clock_.now().time_since_epoch().count();
    }
    return batch_now_;
}

void RecordStage::observe(const core::FlowSample& sample, const core::Applied& applied,
                          const core::SubscriberIndex& index) {
    switch (applied.outcome) {
        case core::LedgerOutcome::Duplicate:
        case core::LedgerOutcome::Stale:
            return;  // the ledger dropped it: no record either
        default:
            break;
    }
    if (is_final(applied.outcome)) {
        observe_destroy(sample, applied, index);
    } else {
        observe_poll(sample, applied, index);
    }
}

void RecordStage::observe_destroy(const core::FlowSample& s, const core::Applied& applied,
                                  const core::SubscriberIndex& index) {
    const auto it = progress_.find(core::FlowKey::of(s));
    const Progress* remembered = it == progress_.end() ? nullptr : &it->second;
    emit(RecordKind::Final, s, applied, index, remembered);
    ++stats_.final_records;
    if (it != progress_.end()) {
        progress_.erase(it);
    }
}

void RecordStage::observe_poll(const core::FlowSample& s, const core::Applied& applied,
                               const core::SubscriberIndex& index) {
    const auto key = core::FlowKey::of(s);
    if (applied.outcome == core::LedgerOutcome::CounterReset) {
        progress_.erase(key);  // a new connection under an old key: earlier reports do not apply
    }
    const auto now = now_ns();
    if (s.start_ns != 0 && now - static_cast<std::int64_t>(s.start_ns) < interval_ns_) {
        return;  // young: nothing to report, nothing to remember
    }
    auto [it, inserted] = progress_.try_emplace(key);
    Progress& p = it.value();
    if (inserted) {
        p.first_seen_ns = now;
    }
    p.last_dump = dumps_ + 1;  // the dump in progress
    const std::int64_t since_ns =
        p.reported_ns != 0
            ? p.reported_ns
            : (s.start_ns != 0 ? static_cast<std::int64_t>(s.start_ns) : p.first_seen_ns);
    if (now - since_ns < interval_ns_) {
        return;
    }
    const FlowRecord& r = emit(RecordKind::Interim, s, applied, index, &p);
    ++stats_.interim_records;
    p.orig = r.orig_total;
    p.reply = r.reply_total;
    p.reported_ns = now;
}

FlowRecord& RecordStage::emit(RecordKind kind, const core::FlowSample& s,
                              const core::Applied& applied, const core::SubscriberIndex& index,
                              const Progress* remembered) {
    const auto now = now_ns();
    const bool reported = remembered != nullptr && remembered->reported_ns != 0;
    FlowRecord& r = pending_.emplace_back();
    r.kind = kind;
    r.zone = s.zone;
    r.conntrack_id = s.id;
    r.orig = s.orig;
    r.reply = s.reply;
    r.orig_total = s.orig_counters;
    r.reply_total = s.reply_counters;
    r.orig_delta = reported ? since(s.orig_counters, remembered->orig) : s.orig_counters;
    r.reply_delta = reported ? since(s.reply_counters, remembered->reply) : s.reply_counters;
    r.start_is_first_seen = s.start_ns == 0;
    r.start_ns = s.start_ns != 0         ? static_cast<std::int64_t>(s.start_ns)
                 : remembered != nullptr ? remembered->first_seen_ns
                                         : now;
    r.end_ns =
        kind == RecordKind::Final && s.stop_ns != 0 ? static_cast<std::int64_t>(s.stop_ns) : now;
    const auto a = applied.attributed
                       ? applied.attribution
                       : core::attribute(index, s, core::TimePoint{std::chrono::nanoseconds{now}});
    r.subscriber = a.subscriber;
    r.direction = a.direction;
    r.flow_id = core::FlowKeyHash{}(core::FlowKey::of(s));
    return r;
}

void RecordStage::end_batch() {
    batch_now_ = 0;
    if (pending_.empty()) {
        return;
    }
    auto batch = std::make_shared<const std::vector<FlowRecord>>(std::move(pending_));
    pending_ = {};
    publish_(std::move(batch));
}

void RecordStage::dump_end(bool complete) {
    if (!complete) {
        return;  // an incomplete dump proves nothing about who is gone
    }
    ++dumps_;
    for (auto it = progress_.begin(); it != progress_.end();) {
        if (dumps_ > it->second.last_dump + kMissedDumpsBeforeForgotten) {
            it = progress_.erase(it);
            ++stats_.forgotten;
        } else {
            ++it;
        }
    }
}

}  // namespace ctquota::sinks
