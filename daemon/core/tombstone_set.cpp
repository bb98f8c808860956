#include "core/tombstone_set.hpp"

#include <algorithm>
#include <bit>

namespace ctquota::core {
namespace {

constexpr std::size_t kMinSlots = 1024;

std::uint32_t fingerprint_of(std::size_t hash) {
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(hash) >> 32);
}

}  // namespace

std::size_t TombstoneSet::Generation::find(const FlowKey& key, std::size_t hash) const {
    const std::uint32_t fingerprint = fingerprint_of(hash);
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
        const Slot& slot = slots_[i];
        if (slot.position == 0 ||
            (slot.fingerprint == fingerprint && keys_[slot.position - 1] == key)) {
            return i;
        }
    }
}

void TombstoneSet::Generation::index_for(std::size_t keys) {
    const std::size_t wanted = std::bit_ceil(std::max(kMinSlots, keys * 2));
    if (wanted <= slots_.size()) {
        return;
    }
    slots_.assign(wanted, Slot{});
    mask_ = wanted - 1;
    const FlowKeyHash hasher;
    for (std::size_t k = 0; k < keys_.size(); ++k) {
        const std::size_t hash = hasher(keys_[k]);
        std::size_t i = hash & mask_;
        while (slots_[i].position != 0) {
            i = (i + 1) & mask_;
        }
        slots_[i] = Slot{fingerprint_of(hash), static_cast<std::uint32_t>(k + 1)};
    }
}

bool TombstoneSet::Generation::insert(const FlowKey& key, std::size_t hash) {
    if (slots_.empty()) {
        index_for(1);
    }
    Slot& slot = slots_[find(key, hash)];
    if (slot.position != 0) {
        return false;
    }
    keys_.push_back(key);
    slot = Slot{fingerprint_of(hash), static_cast<std::uint32_t>(keys_.size())};
    index_for(keys_.size());  // grows (and re-indexes) past a load of a half
    return true;
}

void TombstoneSet::Generation::clear() {
    if (!keys_.empty()) {
        std::fill(slots_.begin(), slots_.end(), Slot{});  // keeps the memory for the next one
        keys_.clear();
    }
    newest_dump = 0;
    newest_at = TimePoint{};
}

void TombstoneSet::Generation::reserve(std::size_t keys) {
    keys_.reserve(keys);
    index_for(keys / 2);
}

void TombstoneSet::insert(const FlowKey& key, std::size_t hash, std::uint64_t dump, TimePoint at) {
    if (older_.contains(key, hash)) {
        return;
    }
    if (younger_.insert(key, hash)) {
        younger_.newest_dump = std::max(younger_.newest_dump, dump);
        younger_.newest_at = std::max(younger_.newest_at, at);
    }
}

void TombstoneSet::rotate(std::uint64_t seq, TimePoint now) {
    if (older_.size() != 0) {
        if (older_.newest_dump + min_dumps_ > seq || now - older_.newest_at < ttl_) {
            return;
        }
    }
    older_.clear();
    std::swap(older_, younger_);
}

void TombstoneSet::append_keys(std::vector<FlowKey>& out) const {
    out.insert(out.end(), older_.keys().begin(), older_.keys().end());
    out.insert(out.end(), younger_.keys().begin(), younger_.keys().end());
}

}  // namespace ctquota::core
