#include "core/flow_ledger.hpp"

#include <algorithm>

namespace ctquota::core {
namespace {

bool below(const Counters& now, const Counters& before) {
    return now.bytes < before.bytes || now.packets < before.packets;
}

bool is_zero(const Counters& c) {
    return c.bytes == 0 && c.packets == 0;
}

std::uint64_t sat_sub(std::uint64_t a, std::uint64_t b) {
    return a > b ? a - b : 0;
}

// Delivered: counted less what was dropped since the life began.
Counters delivered(const Counters& counted, const Counters& dropped, const Counters& base) {
    return Counters{sat_sub(counted.bytes, sat_sub(dropped.bytes, base.bytes)),
                    sat_sub(counted.packets, sat_sub(dropped.packets, base.packets))};
}

// Credits what `now` exceeds `credited` by, and never less than nothing.
Counters grow(Counters& credited, const Counters& now) {
    const Counters delta{sat_sub(now.bytes, credited.bytes),
                         sat_sub(now.packets, credited.packets)};
    credited += delta;
    return delta;
}

const DroppedCounters kNoDrops{};

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

LedgerResult FlowLedger::apply(const FlowSample& sample, TimePoint now,
                               const DroppedCounters* dropped) {
    const FlowKey key = FlowKey::of(sample);
    return sample.kind == SampleKind::Destroy ? apply_destroy(key, sample, now, dropped)
                                              : apply_poll(key, sample, dropped);
}

void FlowLedger::leave_lost(Entry& e) {
    if (e.state == State::Lost) {
        --lost_;
        ++stats_.lost_recovered;
        e.state = State::Live;
    }
}

FlowLedger::DropLife* FlowLedger::life_of(const FlowKey& key, const Entry& e, bool inserted,
                                          bool has_drops) {
    if (lives_.empty() && !has_drops) {
        return nullptr;  // the common case: no flow has drops
    }
    if (auto it = lives_.find(key); it != lives_.end()) {
        return &it.value();
    }
    if (!has_drops) {
        return nullptr;
    }
    // Until now nothing was dropped, so what was credited is what was counted
    // (a lower bound after a restart).
    DropLife& life = lives_[key];
    if (!inserted) {
        life.raw_orig = e.orig;
        life.raw_reply = e.reply;
    }
    return &life;
}

FlowLedger::Entry* FlowLedger::credit(const FlowKey& key, const FlowSample& s,
                                      const DroppedCounters* dropped, LedgerResult& r,
                                      Entry* found) {
    const bool destroy = s.kind == SampleKind::Destroy;
    const Outcomes& outcomes = destroy ? kDestroyOutcomes : kPollOutcomes;
    bool inserted = false;
    if (found == nullptr) {
        auto [it, made] = entries_.try_emplace(key);
        if (made && unseen_.size() != 0 && unseen_.contains(key)) {
            entries_.erase(it);  // a flow whose DESTROY came first: a tombstone without entry
            ++(destroy ? stats_.duplicates : stats_.stale);
            r.outcome = outcomes.absorbed;
            return nullptr;
        }
        inserted = made;
        found = &it.value();
    }
    Entry& e = *found;
    if (inserted && !removed_keys_.empty() && removed_keys_.erase(key) != 0) {
        e.stored = true;  // the row of a flow with the same key is still stored
    }
    if (e.dead()) {
        ++(destroy ? stats_.duplicates : stats_.stale);
        r.outcome = outcomes.absorbed;
        return nullptr;
    }
    DropLife* life = life_of(key, e, inserted, dropped != nullptr);
    const DroppedCounters& d = dropped != nullptr ? *dropped : kNoDrops;
    const Counters& raw_orig = life != nullptr ? life->raw_orig : e.orig;
    const Counters& raw_reply = life != nullptr ? life->raw_reply : e.reply;
    if (inserted) {
        r.outcome = outcomes.unseen;
    } else if (below(s.orig_counters, raw_orig) || below(s.reply_counters, raw_reply)) {
        // A new life of the counters: credited in full, less only what is
        // dropped from now on.
        ++stats_.counter_resets;
        r.outcome = LedgerOutcome::CounterReset;
        e.orig = Counters{};
        e.reply = Counters{};
        if (life != nullptr) {
            life->base = d;
        }
    } else {
        r.outcome = outcomes.known;
    }
    const DroppedCounters& base = life != nullptr ? life->base : kNoDrops;
    r.orig_delta = grow(e.orig, delivered(s.orig_counters, d.orig, base.orig));
    r.reply_delta = grow(e.reply, delivered(s.reply_counters, d.reply, base.reply));
    if (life != nullptr) {
        life->raw_orig = s.orig_counters;
        life->raw_reply = s.reply_counters;
    }
    return &e;
}

LedgerResult FlowLedger::apply_poll(const FlowKey& key, const FlowSample& s,
                                    const DroppedCounters* dropped) {
    LedgerResult r;
    Entry* e = credit(key, s, dropped, r);
    if (e == nullptr) {
        return r;
    }
    e->last_seen_dump = current_dump_;
    e->missed_dumps = 0;
    const bool revived = e->state == State::Lost;
    leave_lost(*e);
    if (revived || r.outcome == LedgerOutcome::FirstSeen ||
        r.outcome == LedgerOutcome::CounterReset || !is_zero(r.orig_delta) ||
        !is_zero(r.reply_delta)) {
        mark_dirty(key, *e);
    }
    r.tag = &e->tag;
    return r;
}

bool FlowLedger::destroy_unseen(const FlowKey& key, const FlowSample& s, TimePoint now,
                                const DroppedCounters* dropped, LedgerResult& r, Entry*& found) {
    // One hash for every lookup; an empty table is not probed at all (it is
    // reserved for nf_conntrack_max live flows: each probe is a cache miss).
    const std::size_t hash = FlowKeyHash{}(key);
    found = nullptr;
    unseen_.prefetch(hash);  // its slots load while the table is probed
    if (!entries_.empty()) {
        if (auto it = entries_.find(key, hash); it != entries_.end()) {
            found = &it.value();
            return false;
        }
    }
    if (!removed_keys_.empty() && removed_keys_.contains(key)) {
        return false;
    }
    if (unseen_.contains(key, hash)) {
        ++stats_.duplicates;
        r.outcome = LedgerOutcome::Duplicate;
        return true;
    }
    // Nothing was credited yet: what was delivered, as credit() gives a new entry.
    const DroppedCounters& d = dropped != nullptr ? *dropped : kNoDrops;
    r.outcome = LedgerOutcome::FinalUnseen;
    r.orig_delta = delivered(s.orig_counters, d.orig, Counters{});
    r.reply_delta = delivered(s.reply_counters, d.reply, Counters{});
    unseen_.insert(key, hash, last_started_dump_, now);
    return true;
}

LedgerResult FlowLedger::apply_destroy(const FlowKey& key, const FlowSample& s, TimePoint now,
                                       const DroppedCounters* dropped) {
    LedgerResult r;
    Entry* found = nullptr;
    if (destroy_unseen(key, s, now, dropped, r, found)) {
        return r;
    }
    Entry* e = credit(key, s, dropped, r, found);
    if (e == nullptr) {
        return r;
    }
    if (!lives_.empty()) {
        lives_.erase(key);  // a tombstone credits nothing more
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
    if (e->stored) {
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
            forget(key, e);  // its row leaves the stored checkpoint
            --lost_;
            return true;
        case State::Live:
            break;
    }
    if (!complete || e.last_seen_dump >= seq || ++e.missed_dumps < kMissedDumpsBeforeLost) {
        return false;
    }
    ++stats_.lost_flows;
    e.state = State::Lost;
    e.dead_at = now == TimePoint::max() ? TimePoint{} : now;
    ++lost_;
    lost.push_back(row_of(key, e));
    mark_dirty(key, e);  // its stored row says lost, and since when
    return false;
}

std::vector<CheckpointEntry> FlowLedger::dump_end(std::uint64_t seq, bool complete, TimePoint now) {
    std::vector<CheckpointEntry> lost;
    // begin() of an empty table still walks every bucket to find none.
    for (auto it = entries_.empty() ? entries_.end() : entries_.begin(); it != entries_.end();) {
        if (sweep(it->first, it.value(), seq, complete, now, lost)) {
            if (!lives_.empty()) {
                lives_.erase(it->first);
            }
            it = entries_.erase(it);
        } else {
            ++it;
        }
    }
    unseen_.rotate(seq, now);
    return lost;
}

void FlowLedger::mark_dirty(const FlowKey& key, Entry& e) {
    if (e.dirty) {
        return;
    }
    e.dirty = true;
    // Keys of entries erased while dirty stay behind until the next take; when
    // no take comes (a flush in doubt for long), they must not pile up.
    if (dirty_keys_.size() >= 2 * entries_.size() + 1024) {
        dirty_keys_.clear();
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            if (it->second.dirty) {
                dirty_keys_.push_back(it->first);
            }
        }
        return;  // `e` is dirty already, so its key was among them
    }
    dirty_keys_.push_back(key);
}

CheckpointChanges FlowLedger::take_changes(bool snapshot) {
    CheckpointChanges c;
    c.snapshot = snapshot;
    auto take_one = [&c](const FlowKey& key, Entry& e) {
        e.dirty = false;
        if (e.state != State::Dead) {
            c.upserts.push_back(row_of(key, e));
        } else if (e.stored) {
            c.removals.push_back(key);
        }
    };
    if (snapshot) {
        c.upserts.reserve(entries_.size() - dead_);
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

void FlowLedger::changes_committed(const CheckpointChanges& changes) {
    for (const auto& u : changes.upserts) {
        auto it = entries_.find(u.key);
        if (it == entries_.end()) {
            removed_keys_.insert(u.key);  // swept while its row was being written
            continue;
        }
        Entry& e = it.value();
        e.stored = true;
        if (e.state == State::Dead || (e.state == State::Lost) != u.lost) {
            mark_dirty(u.key, e);  // ended, lost or found while its row was being written
        }
    }
    for (const auto& key : changes.removals) {
        auto it = entries_.find(key);
        if (it == entries_.end()) {
            removed_keys_.erase(key);  // swept after the take: nothing left to remove
        } else {
            it.value().stored = false;  // Live again (seen by a dump): dirty, upserted next
        }
    }
}

void FlowLedger::return_changes(const CheckpointChanges& changes) {
    for (const auto& u : changes.upserts) {
        auto it = entries_.find(u.key);
        if (it != entries_.end()) {
            mark_dirty(u.key, it.value());
        }  // else: swept meanwhile; a row it had before is among removed_keys_
    }
    for (const auto& key : changes.removals) {
        auto it = entries_.find(key);
        if (it == entries_.end()) {
            removed_keys_.insert(key);
        } else {
            it.value().stored = true;  // the removal did not happen
            mark_dirty(key, it.value());
        }
    }
}

void FlowLedger::take_row_state(Entry& e, const CheckpointEntry& row, TimePoint now) {
    if (e.state == State::Lost) {
        --lost_;
    } else if (e.state == State::Dead) {
        --dead_;
    }
    e.state = State::Live;
    if (row.lost) {
        // Not a new verdict (stats stay): the hour goes on from when it was given.
        e.state = State::Lost;
        e.dead_at = std::min(row.lost_at, now);
        ++lost_;
    }
}

void FlowLedger::restore(const std::vector<CheckpointEntry>& entries, TimePoint now) {
    for (const auto& ce : entries) {
        Entry& e = entries_[ce.key];
        const State before = e.state;
        e = Entry{};
        e.state = before;  // take_row_state counts the change from it
        take_row_state(e, ce, now);
        e.orig = ce.orig;
        e.reply = ce.reply;
        e.stored = true;
    }
}

void FlowLedger::restore_pending(const CheckpointChanges& changes,
                                 const std::vector<FlowKey>& tombstones, TimePoint now) {
    for (const auto& u : changes.upserts) {
        Entry& e = entries_[u.key];  // stored when the checkpoint had it
        e.orig = u.orig;
        e.reply = u.reply;
        take_row_state(e, u, now);
        mark_dirty(u.key, e);
    }
    for (const auto& key : tombstones) {
        auto it = entries_.find(key);
        if (it == entries_.end()) {
            unseen_.insert(key, last_started_dump_, now);
            continue;
        }
        Entry& e = it.value();
        if (e.state != State::Dead) {
            lost_ -= e.state == State::Lost ? 1 : 0;
            e.state = State::Dead;
            e.dead_since_dump = last_started_dump_;
            e.dead_at = now;
            ++dead_;
        }
        if (e.stored) {
            mark_dirty(key, e);
        }
    }
    for (const auto& key : changes.removals) {
        auto it = entries_.find(key);
        if (it != entries_.end() && it->second.state != State::Dead) {
            // Swept after it ended or after its lost hour: only its removal was left.
            lost_ -= it->second.state == State::Lost ? 1 : 0;
            entries_.erase(it);
            removed_keys_.insert(key);
        } else if (it == entries_.end()) {
            removed_keys_.insert(key);
        }  // a tombstone: dirty, its removal goes out with the next take
    }
}

std::vector<FlowKey> FlowLedger::tombstone_keys() const {
    std::vector<FlowKey> keys;
    keys.reserve(dead_ + unseen_.size());
    unseen_.append_keys(keys);
    for (auto it = dead_ == 0 ? entries_.end() : entries_.begin(); it != entries_.end(); ++it) {
        if (it->second.state == State::Dead) {
            keys.push_back(it->first);
        }
    }
    return keys;
}

}  // namespace ctquota::core
