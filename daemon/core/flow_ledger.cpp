#include "core/flow_ledger.hpp"

namespace ctquota::core {
namespace {

bool below(const Counters& now, const Counters& before) {
    return now.bytes < before.bytes || now.packets < before.packets;
}

Counters minus(const Counters& now, const Counters& before) {
    return Counters{now.bytes - before.bytes, now.packets - before.packets};
}

// Tombstones must outlive every dump that may have started before the
// DESTROY: the one running and the next.
constexpr std::uint64_t kTombstoneDumps = 2;
// A credited flow absent from this many complete dumps in a row is gone.
constexpr std::uint32_t kMissedDumpsBeforeLost = 2;

}  // namespace

LedgerResult FlowLedger::apply(const FlowSample& sample) {
    const FlowKey key = FlowKey::of(sample);
    return sample.kind == SampleKind::Destroy ? apply_destroy(key, sample)
                                              : apply_poll(key, sample);
}

LedgerResult FlowLedger::apply_poll(const FlowKey& key, const FlowSample& s) {
    if (tombstones_.contains(key)) {
        ++stats_.stale;
        return LedgerResult{LedgerOutcome::Stale, {}, {}, nullptr};
    }
    auto [it, inserted] = entries_.try_emplace(key);
    Entry& e = it->second;
    LedgerResult r;
    if (inserted) {
        r.outcome = LedgerOutcome::FirstSeen;
        r.orig_delta = s.orig_counters;
        r.reply_delta = s.reply_counters;
    } else if (below(s.orig_counters, e.orig) || below(s.reply_counters, e.reply)) {
        ++stats_.counter_resets;
        r.outcome = LedgerOutcome::CounterReset;
        r.orig_delta = s.orig_counters;
        r.reply_delta = s.reply_counters;
    } else {
        r.outcome = LedgerOutcome::Progress;
        r.orig_delta = minus(s.orig_counters, e.orig);
        r.reply_delta = minus(s.reply_counters, e.reply);
    }
    e.last_seen_dump = current_dump_;
    e.missed_dumps = 0;
    if (r.orig_delta.packets != 0 || r.reply_delta.packets != 0 || r.orig_delta.bytes != 0 ||
        r.reply_delta.bytes != 0 || inserted) {
        e.orig = s.orig_counters;
        e.reply = s.reply_counters;
        mark_dirty(key);
    }
    r.tag = &e.tag;
    return r;
}

LedgerResult FlowLedger::apply_destroy(const FlowKey& key, const FlowSample& s) {
    LedgerResult r;
    if (tombstones_.contains(key)) {
        ++stats_.duplicates;
        r.outcome = LedgerOutcome::Duplicate;
        return r;
    }
    tombstones_.emplace(key, last_started_dump_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
        r.outcome = LedgerOutcome::FinalUnseen;
        r.orig_delta = s.orig_counters;
        r.reply_delta = s.reply_counters;
        return r;
    }
    const Entry& e = it->second;
    if (below(s.orig_counters, e.orig) || below(s.reply_counters, e.reply)) {
        ++stats_.counter_resets;
        r.outcome = LedgerOutcome::CounterReset;
        r.orig_delta = s.orig_counters;
        r.reply_delta = s.reply_counters;
    } else {
        r.outcome = LedgerOutcome::Final;
        r.orig_delta = minus(s.orig_counters, e.orig);
        r.reply_delta = minus(s.reply_counters, e.reply);
    }
    entries_.erase(it);
    mark_dirty(key);
    return r;
}

void FlowLedger::dump_begin(std::uint64_t seq) {
    current_dump_ = seq;
    last_started_dump_ = seq;
}

std::vector<CheckpointEntry> FlowLedger::dump_end(std::uint64_t seq, bool complete) {
    std::vector<CheckpointEntry> lost;
    std::erase_if(tombstones_,
                  [seq](const auto& kv) { return kv.second + kTombstoneDumps <= seq; });
    if (!complete) {
        return lost;
    }
    for (auto it = entries_.begin(); it != entries_.end();) {
        Entry& e = it->second;
        if (e.last_seen_dump >= seq) {
            ++it;
            continue;
        }
        if (++e.missed_dumps < kMissedDumpsBeforeLost) {
            ++it;
            continue;
        }
        lost.push_back(CheckpointEntry{it->first, e.orig, e.reply});
        ++stats_.lost_flows;
        mark_dirty(it->first);
        it = entries_.erase(it);
    }
    return lost;
}

CheckpointChanges FlowLedger::take_changes(bool snapshot) {
    CheckpointChanges c;
    c.snapshot = snapshot;
    if (snapshot) {
        c.upserts.reserve(entries_.size());
        for (const auto& [key, e] : entries_) {
            c.upserts.push_back(CheckpointEntry{key, e.orig, e.reply});
        }
        // Removals are implied by a snapshot, but kept so that a failed write can
        // hand them back and the older rows still learn about them.
        for (const auto& key : dirty_) {
            if (!entries_.contains(key)) {
                c.removals.push_back(key);
            }
        }
        dirty_.clear();
        return c;
    }
    for (const auto& key : dirty_) {
        auto it = entries_.find(key);
        if (it == entries_.end()) {
            c.removals.push_back(key);
        } else {
            c.upserts.push_back(CheckpointEntry{key, it->second.orig, it->second.reply});
        }
    }
    dirty_.clear();
    return c;
}

void FlowLedger::return_changes(const CheckpointChanges& changes) {
    if (changes.snapshot) {
        // The stored checkpoint is still the old one; marking every live entry
        // dirty lets the next write, snapshot or delta, bring it up to date.
        for (const auto& [key, e] : entries_) {
            dirty_.insert(key);
        }
    }
    for (const auto& u : changes.upserts) {
        dirty_.insert(u.key);
    }
    for (const auto& k : changes.removals) {
        dirty_.insert(k);
    }
}

void FlowLedger::restore(const std::vector<CheckpointEntry>& entries) {
    for (const auto& ce : entries) {
        Entry& e = entries_[ce.key];
        e.orig = ce.orig;
        e.reply = ce.reply;
        e.last_seen_dump = 0;
        e.missed_dumps = 0;
    }
}

}  // namespace ctquota::core
