#include "core/accounting.hpp"

#include <algorithm>

namespace ctquota::core {

Attribution attribute(const SubscriberIndex& index, const FlowSample& s, TimePoint at) {
    if (auto sub = index.lookup(s.orig.src, at)) {
        return Attribution{*sub, Direction::OrigIsUpload};
    }
    if (auto sub = index.lookup(s.orig.dst, at)) {
        return Attribution{*sub, Direction::OrigIsDownload};
    }
    // Inbound through DNAT: the subscriber's address is only in the reply tuple.
    if (auto sub = index.lookup(s.reply.src, at)) {
        return Attribution{*sub, Direction::OrigIsDownload};
    }
    return Attribution{};
}

TimePoint usage_time(const FlowSample& s, TimePoint now, bool* implausible) {
    if (s.as_of_ns == 0) {
        return now;
    }
    const TimePoint at{std::chrono::nanoseconds{s.as_of_ns}};
    const bool plausible = at <= now + kAsOfAhead && at >= now - kAsOfMaxAge;
    if (implausible != nullptr) {
        *implausible = !plausible;
    }
    return plausible ? at : now;
}

Accounting::Accounting(const Clock& clock, std::shared_ptr<const UsageRules> rules)
    : clock_(clock), index_(std::make_shared<const SubscriberIndex>()) {
    set_usage_rules(std::move(rules));
}

void Accounting::set_usage_rules(std::shared_ptr<const UsageRules> rules) {
    rules_ = rules ? std::move(rules) : std::make_shared<const CalendarMonthRules>();
    periods_.clear();
}

const Period& Accounting::period_of(SubscriberId subscriber, TimePoint at) {
    auto it = periods_.find(subscriber);
    if (it != periods_.end() && it->second.contains(at)) {
        return it->second;
    }
    auto [pos, inserted] = periods_.insert_or_assign(subscriber, rules_->period(subscriber, at));
    return pos->second;
}

void Accounting::set_index(std::shared_ptr<const SubscriberIndex> index) {
    index_ = std::move(index);
    ++index_generation_;  // invalidates every attribution cached in the ledger
}

Applied Accounting::apply(const FlowSample& sample) {
    return apply(sample, clock_.now());
}

Applied Accounting::apply(const FlowSample& sample, TimePoint now) {
    ++stats_.samples;
    if (sample.kind == SampleKind::Destroy) {
        ++stats_.destroy_samples;
    }
    const std::optional<DroppedCounters> dropped = drops_.find(sample);
    const LedgerResult r = ledger_.apply(sample, now, dropped ? &*dropped : nullptr);
    const bool final_with_drops =
        dropped && sample.kind == SampleKind::Destroy && r.outcome != LedgerOutcome::Duplicate;
    if (r.orig_delta.bytes == 0 && r.orig_delta.packets == 0 && r.reply_delta.bytes == 0 &&
        r.reply_delta.packets == 0) {
        if (final_with_drops) {
            drops_.finish(sample);  // nothing left to bill: no later drop can matter
        }
        return Applied{r.outcome, false, {}};
    }
    bool implausible = false;
    const TimePoint at = usage_time(sample, now, &implausible);
    stats_.implausible_times += implausible ? 1 : 0;
    Attribution a;
    const FlowTag* cached = r.tag != nullptr ? r.tag : &r.final_tag;
    if (cached->generation == index_generation_) {
        a = Attribution{cached->subscriber, static_cast<Direction>(cached->direction)};
    } else {
        a = attribute(*index_, sample, at);
        if (r.tag != nullptr) {
            *r.tag =
                FlowTag{index_generation_, a.subscriber, static_cast<std::uint8_t>(a.direction)};
        }
    }
    if (final_with_drops) {
        parked_.push_back(ParkedFinal{sample, *dropped, r.orig_delta, r.reply_delta, a, at, now});
    } else {
        credit(sample, a, at, r.orig_delta, r.reply_delta);
    }
    return Applied{r.outcome, true, a};
}

void Accounting::credit(const FlowSample& sample, const Attribution& a, TimePoint at,
                        const Counters& orig, const Counters& reply) {
    if (a.subscriber == kUnattributed) {
        ++stats_.unattributed_samples;
        stats_.unattributed_bytes += orig.bytes + reply.bytes;
        stats_.last_unattributed = sample.orig;
        usage_.add_unattributed(at, Usage{orig, reply});
        return;
    }
    const bool orig_up = a.direction == Direction::OrigIsUpload;
    // The far end: where the subscriber sent to, or who opened the connection toward it.
    const IpAddress& remote = orig_up ? sample.orig.dst : sample.orig.src;
    const UsageClass cls = rules_->counts_everything() ? UsageClass::Counted
                                                       : rules_->classify(a.subscriber, remote, at);
    usage_.add(a.subscriber, at, period_of(a.subscriber, at), cls,
               orig_up ? Usage{orig, reply} : Usage{reply, orig});
}

namespace {

// `delta` less what was dropped of it since: never below zero.
Counters less_growth(const Counters& delta, const Counters& before, const Counters& now) {
    const auto cut = [](std::uint64_t d, std::uint64_t b, std::uint64_t n) {
        const std::uint64_t grown = n > b ? n - b : 0;
        return d - std::min(d, grown);
    };
    return Counters{cut(delta.bytes, before.bytes, now.bytes),
                    cut(delta.packets, before.packets, now.packets)};
}

}  // namespace

void Accounting::settle(ParkedFinal& p) {
    if (const auto now = drops_.find(p.sample)) {
        const Counters orig = less_growth(p.orig, p.used.orig, now->orig);
        const Counters reply = less_growth(p.reply, p.used.reply, now->reply);
        stats_.late_drop_bytes += p.orig.bytes - orig.bytes + p.reply.bytes - reply.bytes;
        p.orig = orig;
        p.reply = reply;
    }
    drops_.finish(p.sample);
    credit(p.sample, p.attribution, p.at, p.orig, p.reply);
}

void Accounting::settle_finals(TimePoint now, bool all) {
    std::size_t n = 0;
    while (n < parked_.size() && (all || now - parked_[n].parked_at >= kFinalGrace)) {
        settle(parked_[n]);
        ++n;
    }
    parked_.erase(parked_.begin(), parked_.begin() + static_cast<std::ptrdiff_t>(n));
}

std::vector<CheckpointEntry> Accounting::dump_end(std::uint64_t seq, bool complete) {
    if (complete) {
        ++stats_.dumps_completed;
    }
    drops_.dump_end(seq, complete);
    return ledger_.dump_end(seq, complete, clock_.now());
}

FlushBatch Accounting::take(bool checkpoint_snapshot) {
    settle_finals(TimePoint{}, true);  // a flushed journal position covers their events
    return FlushBatch{usage_.take(), ledger_.take_changes(checkpoint_snapshot), journal_position_};
}

void Accounting::restore_spill(const FlushBatch& batch, const std::vector<FlowKey>& tombstones,
                               TimePoint now) {
    usage_.merge_back(batch.usage);
    ledger_.restore_pending(batch.checkpoint, tombstones, now);
    journal_position_ = batch.journal_position;
}

void Accounting::give_back(const FlushBatch& batch) {
    usage_.merge_back(batch.usage);
    ledger_.return_changes(batch.checkpoint);
}

}  // namespace ctquota::core
