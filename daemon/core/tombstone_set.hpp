#pragma once
// TombstoneSet: the keys of flows whose DESTROY was credited before any dump
// saw them (the common short flow), kept only so that a resent DESTROY or a
// dump sample that raced it is dropped. A key is all such a flow needs, so it
// is kept apart from the ledger's table of full entries, in two generations:
// new keys go to the younger; the older is forgotten whole once its newest
// key has lived `min_dumps` dump boundaries and `ttl`, and the younger takes
// its place. Every key lives at least that long, at most about twice it, and
// no dump walks the keys one by one.
//
// Every DESTROY of a short flow probes it, and under sustained load it holds
// 10-20 s of flows (a million keys at 50k flows/s): far larger than the cache.
// So a generation keeps its keys in arrival order (appended, written once) and
// indexes them with a table of 8-byte slots (32 bits of the hash and the key's
// position): a probe reads one slot's cache line, the key itself only when the
// 32 bits match. prefetch() lets a caller overlap those misses with its own.

#include <cstdint>
#include <vector>

#include "core/clock.hpp"
#include "core/flow.hpp"
#include "core/huge_page_allocator.hpp"

namespace ctquota::core {

class TombstoneSet {
  public:
    TombstoneSet(std::uint64_t min_dumps, std::chrono::nanoseconds ttl)
        : min_dumps_(min_dumps), ttl_(ttl) {}

    // `hash`: FlowKeyHash of `key`, when the caller has it already.
    [[nodiscard]] bool contains(const FlowKey& key, std::size_t hash) const {
        return younger_.contains(key, hash) || older_.contains(key, hash);
    }
    [[nodiscard]] bool contains(const FlowKey& key) const {
        return contains(key, FlowKeyHash{}(key));
    }
    // Starts loading the slots a probe of `hash` reads.
    void prefetch(std::size_t hash) const {
        younger_.prefetch(hash);
        older_.prefetch(hash);
    }
    // `dump`: the last dump started when the flow ended; `at`: when it ended.
    // A key already kept keeps its place.
    void insert(const FlowKey& key, std::size_t hash, std::uint64_t dump, TimePoint at);
    void insert(const FlowKey& key, std::uint64_t dump, TimePoint at) {
        insert(key, FlowKeyHash{}(key), dump, at);
    }
    // At the end of dump `seq`.
    void rotate(std::uint64_t seq, TimePoint now);

    // Room for `keys` in each generation, so a burst of short flows does not
    // grow (and fault in) a table key by key: the keys' memory is reserved,
    // and the index made for half as many (re-indexing is one pass over the
    // keys, in order).
    void reserve(std::size_t keys) {
        younger_.reserve(keys);
        older_.reserve(keys);
    }

    [[nodiscard]] std::size_t size() const { return younger_.size() + older_.size(); }
    void append_keys(std::vector<FlowKey>& out) const;

  private:
    class Generation {
      public:
        [[nodiscard]] bool contains(const FlowKey& key, std::size_t hash) const {
            return !keys_.empty() && slots_[find(key, hash)].position != 0;
        }
        void prefetch(std::size_t hash) const {
            if (!keys_.empty()) {
                __builtin_prefetch(&slots_[hash & mask_]);
            }
        }
        // False when the key was there already.
        bool insert(const FlowKey& key, std::size_t hash);
        void clear();
        void reserve(std::size_t keys);
        [[nodiscard]] std::size_t size() const { return keys_.size(); }
        [[nodiscard]] const auto& keys() const { return keys_; }

        std::uint64_t newest_dump = 0;
        TimePoint newest_at{};

      private:
        struct Slot {
            std::uint32_t fingerprint = 0;  // the hash's upper half
            std::uint32_t position = 0;     // 1 + the key's index in keys_; 0: empty
        };
        // The slot holding `key`, or the empty one where it would go.
        [[nodiscard]] std::size_t find(const FlowKey& key, std::size_t hash) const;
        // Slots for `keys` at a load of at most a half (a power of two).
        void index_for(std::size_t keys);

        std::vector<FlowKey, HugePageAllocator<FlowKey>> keys_;
        std::vector<Slot, HugePageAllocator<Slot>> slots_;
        std::size_t mask_ = 0;
    };

    std::uint64_t min_dumps_;
    std::chrono::nanoseconds ttl_;
    Generation younger_;
    Generation older_;
};

}  // namespace ctquota::core
