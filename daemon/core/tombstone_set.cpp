#include "core/tombstone_set.hpp"

#include <algorithm>

namespace ctquota::core {

void TombstoneSet::insert(const FlowKey& key, std::uint64_t dump, TimePoint at) {
    if (!older_.keys.empty() && older_.keys.contains(key, FlowKeyHash{}(key))) {
        return;
    }
    if (younger_.keys.insert(key).second) {
        younger_.newest_dump = std::max(younger_.newest_dump, dump);
        younger_.newest_at = std::max(younger_.newest_at, at);
    }
}

void TombstoneSet::rotate(std::uint64_t seq, TimePoint now) {
    if (!older_.keys.empty()) {
        if (older_.newest_dump + min_dumps_ > seq || now - older_.newest_at < ttl_) {
            return;
        }
        older_.keys.clear();  // keeps its buckets: the next generation reuses them
    }
    std::swap(older_, younger_);
    younger_.newest_dump = 0;
    younger_.newest_at = TimePoint{};
}

void TombstoneSet::append_keys(std::vector<FlowKey>& out) const {
    out.insert(out.end(), older_.keys.begin(), older_.keys.end());
    out.insert(out.end(), younger_.keys.begin(), younger_.keys.end());
}

}  // namespace ctquota::core
