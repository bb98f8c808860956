#include "core/drop_table.hpp"

#include <unordered_set>

namespace ctquota::core {
namespace {

// A live flow is in every complete dump: two complete dumps without it mean
// its entry belongs to no flow we will hear of again.
constexpr std::uint32_t kMissedDumpsBeforeOrphan = 2;

}  // namespace

void DropTable::refresh(const std::vector<DropRecord>& kernel) {
    std::unordered_set<FlowKey, FlowKeyHash> seen;
    seen.reserve(kernel.size());
    for (const auto& r : kernel) {
        seen.insert(r.key);
        auto [it, inserted] = entries_.try_emplace(r.key);
        it.value().dropped = r.dropped;
        if (inserted) {
            it.value().born_dump = dump_;
        }
    }
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (seen.contains(it->first)) {
            ++it;
        } else {
            ++stats_.vanished_flows;
            it = entries_.erase(it);
        }
    }
}

std::vector<FlowKey> DropTable::keys_of(const FlowSample& s) {
    std::vector<FlowKey> keys{key_of(s)};
    if (s.start_ns != 0) {
        keys.push_back(FlowKey{0, 0, s.orig, 0});
    }
    return keys;
}

std::optional<DroppedCounters> DropTable::find(const FlowSample& s) {
    if (entries_.empty()) {
        return std::nullopt;
    }
    std::optional<DroppedCounters> sum;
    for (const auto& key : keys_of(s)) {
        auto it = entries_.find(key);
        if (it == entries_.end()) {
            continue;
        }
        it.value().used = true;
        it.value().missed_dumps = 0;
        if (!sum) {
            sum = DroppedCounters{};
        }
        sum->orig += it->second.dropped.orig;
        sum->reply += it->second.dropped.reply;
    }
    return sum;
}

void DropTable::erase(const FlowKey& key) {
    erasures_.push_back(key);
    entries_.erase(key);
}

void DropTable::finish(const FlowSample& s) {
    for (const auto& key : keys_of(s)) {
        if (entries_.contains(key)) {
            erase(key);
        }
    }
}

std::vector<FlowKey> DropTable::take_erasures() {
    std::vector<FlowKey> out;
    out.swap(erasures_);
    return out;
}

void DropTable::dump_end(std::uint64_t seq, bool complete) {
    if (!complete) {
        return;
    }
    std::vector<FlowKey> orphans;
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        Entry& e = it.value();
        const bool whole_dump_without_it = !e.used && e.born_dump < seq;
        e.used = false;
        if (whole_dump_without_it && ++e.missed_dumps >= kMissedDumpsBeforeOrphan) {
            orphans.push_back(it->first);
            ++stats_.unapplied_flows;
            stats_.unapplied_bytes += e.dropped.orig.bytes + e.dropped.reply.bytes;
        }
    }
    for (const auto& key : orphans) {
        erase(key);
    }
}

}  // namespace ctquota::core
