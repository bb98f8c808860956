#include "core/flow_ledger.hpp"

namespace ctquota::core {
namespace {

bool below(const Counters& now, const Counters& before) {
    return now.bytes < before.bytes || now.packets < before.packets;
}

Counters minus(const Counters& now, const Counters& before) {
    return Counters{now.bytes - before.bytes, now.packets - before.packets};
}

bool is_zero(const Counters& c) {
    return c.bytes == 0 && c.packets == 0;
}

// Tombstones must outlive every dump that may have started before the
// DESTROY: the one running and the next.
constexpr std::uint64_t kTombstoneDumps = 2;

// How each sample kind names the cases that credit() tells apart.
struct Outcomes {
    LedgerOutcome unseen;    // no entry yet: full counters
    LedgerOutcome known;     // the difference
    LedgerOutcome absorbed;  // a tombstone took the sample: nothing
};
constexpr Outcomes kPollOutcomes{LedgerOutcome::FirstSeen, LedgerOutcome::Progress,
                                 LedgerOutcome::Stale};
constexpr Outcomes kDestroyOutcomes{LedgerOutcome::FinalUnseen, LedgerOutcome::Final,
                                    LedgerOutcome::Duplicate};

}  // namespace

LedgerResult FlowLedger::apply(const FlowSample& sample, TimePoint now) {
    const FlowKey key = FlowKey::of(sample);
    return sample.kind == SampleKind::Destroy ? apply_destroy(key, sample, now)
                                              : apply_poll(key, sample);
}

void FlowLedger::leave_lost(Entry& e) {
    if (e.state == State::Lost) {
        --lost_;
        ++stats_.lost_recovered;
        e.state = State::Live;
    }
}

FlowLedger::Entry* FlowLedger::credit(const FlowKey& key, const FlowSample& s, LedgerResult& r) {
    const bool destroy = s.kind == SampleKind::Destroy;
    const Outcomes& outcomes = destroy ? kDestroyOutcomes : kPollOutcomes;
    auto [it, inserted] = entries_.try_emplace(key);
    Entry& e = it.value();
    if (e.dead()) {
        ++(destroy ? stats_.duplicates : stats_.stale);
        r.outcome = outcomes.absorbed;
        return nullptr;
    }
    if (inserted) {
        r.outcome = outcomes.unseen;
        r.orig_delta = s.orig_counters;
        r.reply_delta = s.reply_counters;
    } else if (below(s.orig_counters, e.orig) || below(s.reply_counters, e.reply)) {
        ++stats_.counter_resets;
        r.outcome = LedgerOutcome::CounterReset;
        r.orig_delta = s.orig_counters;
        r.reply_delta = s.reply_counters;
    } else {
        r.outcome = outcomes.known;
        r.orig_delta = minus(s.orig_counters, e.orig);
        r.reply_delta = minus(s.reply_counters, e.reply);
    }
    return &e;
}

LedgerResult FlowLedger::apply_poll(const FlowKey& key, const FlowSample& s) {
    LedgerResult r;
    Entry* e = credit(key, s, r);
    if (e == nullptr) {
        return r;
    }
    e->last_seen_dump = current_dump_;
    e->missed_dumps = 0;
    const bool revived = e->state == State::Lost;
    leave_lost(*e);
    if (revived || r.outcome == LedgerOutcome::FirstSeen || !is_zero(r.orig_delta) ||
        !is_zero(r.reply_delta)) {
        e->orig = s.orig_counters;
        e->reply = s.reply_counters;
        mark_dirty(key, *e);
    }
    r.tag = &e->tag;
    return r;
}

LedgerResult FlowLedger::apply_destroy(const FlowKey& key, const FlowSample& s, TimePoint now) {
    LedgerResult r;
    Entry* e = credit(key, s, r);
    if (e == nullptr) {
        return r;
    }
    if (r.outcome == LedgerOutcome::Final) {
        // The attribution cached by a dump is handed back once more.
        r.final_tag = e->tag;
    }
    leave_lost(*e);
    e->state = State::Dead;
    e->dead_since_dump = last_started_dump_;
    e->dead_at = now;
    ++dead_;
    if (e->persisted) {
        mark_dirty(key, *e);  // the stored checkpoint must drop it
    }
    return r;
}

void FlowLedger::dump_begin(std::uint64_t seq) {
    current_dump_ = seq;
    last_started_dump_ = seq;
}

bool FlowLedger::sweep(const FlowKey& key, Entry& e, std::uint64_t seq, bool complete,
                       TimePoint now, std::vector<CheckpointEntry>& lost) {
    const auto lived = [&](auto lifetime) { return now - e.dead_at >= lifetime; };
    switch (e.state) {
        case State::Dead:
            if (e.dead_since_dump + kTombstoneDumps > seq || !lived(kTombstoneTtl)) {
                return false;
            }
            forget(key, e);
            --dead_;
            return true;
        case State::Lost:
            if (!lived(kLostMemory)) {
                return false;
            }
            --lost_;
            return true;
        case State::Live:
            break;
    }
    if (!complete || e.last_seen_dump >= seq || ++e.missed_dumps < kMissedDumpsBeforeLost) {
        return false;
    }
    lost.push_back(CheckpointEntry{key, e.orig, e.reply});
    ++stats_.lost_flows;
    forget(key, e);
    e.state = State::Lost;
    e.persisted = false;  // its removal is on its way to the stored checkpoint
    e.dead_at = now == TimePoint::max() ? TimePoint{} : now;
    ++lost_;
    return false;
}

std::vector<CheckpointEntry> FlowLedger::dump_end(std::uint64_t seq, bool complete, TimePoint now) {
    std::vector<CheckpointEntry> lost;
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (sweep(it->first, it.value(), seq, complete, now, lost)) {
            it = entries_.erase(it);
        } else {
            ++it;
        }
    }
    return lost;
}

CheckpointChanges FlowLedger::take_changes(bool snapshot) {
    CheckpointChanges c;
    c.snapshot = snapshot;
    auto take_one = [&c](const FlowKey& key, Entry& e) {
        e.dirty = false;
        if (e.state == State::Live) {
            e.persisted = true;
            c.upserts.push_back(CheckpointEntry{key, e.orig, e.reply});
        } else if (e.persisted) {
            c.removals.push_back(key);
        }
    };
    if (snapshot) {
        c.upserts.reserve(entries_.size() - dead_ - lost_);
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            take_one(it->first, it.value());
        }
    } else {
        c.upserts.reserve(dirty_keys_.size());
        for (const auto& key : dirty_keys_) {
            auto it = entries_.find(key);
            if (it != entries_.end() && it->second.dirty) {
                take_one(key, it.value());
            }
        }
    }
    // A snapshot implies its removals; they are listed anyway so that a failed
    // write can hand them back and the older stored rows still learn of them.
    c.removals.insert(c.removals.end(), removed_keys_.begin(), removed_keys_.end());
    removed_keys_.clear();
    dirty_keys_.clear();
    return c;
}

void FlowLedger::return_changes(const CheckpointChanges& changes) {
    for (const auto& u : changes.upserts) {
        auto it = entries_.find(u.key);
        if (it != entries_.end()) {
            mark_dirty(u.key, it.value());
        }
    }
    for (const auto& key : changes.removals) {
        auto it = entries_.find(key);
        if (it == entries_.end() || it->second.state == State::Lost) {
            removed_keys_.push_back(key);
        } else if (it->second.dead()) {
            mark_dirty(key, it.value());
        }  // Live again (a lost flow seen by a dump): its upsert replaces the row
    }
}

void FlowLedger::restore(const std::vector<CheckpointEntry>& entries) {
    for (const auto& ce : entries) {
        Entry& e = entries_[ce.key];
        e = Entry{};
        e.orig = ce.orig;
        e.reply = ce.reply;
        e.persisted = true;
    }
}

}  // namespace ctquota::core
