#pragma once
// TombstoneSet: the keys of flows whose DESTROY was credited before any dump
// saw them (the common short flow), kept only so that a resent DESTROY or a
// dump sample that raced it is dropped. A key is all such a flow needs, so it
// is kept apart from the ledger's table of full entries, in two generations:
// new keys go to the younger; the older is forgotten whole once its newest
// key has lived `min_dumps` dump boundaries and `ttl`, and the younger takes
// its place. Every key lives at least that long, at most about twice it, and
// no dump walks the keys one by one.

#include <tsl/robin_set.h>

#include <cstdint>
#include <vector>

#include "core/clock.hpp"
#include "core/flow.hpp"

namespace ctquota::core {

class TombstoneSet {
  public:
    TombstoneSet(std::uint64_t min_dumps, std::chrono::nanoseconds ttl)
        : min_dumps_(min_dumps), ttl_(ttl) {}

    // `hash`: FlowKeyHash of `key`, when the caller has it already.
    [[nodiscard]] bool contains(const FlowKey& key, std::size_t hash) const {
        return (!younger_.keys.empty() && younger_.keys.contains(key, hash)) ||
               (!older_.keys.empty() && older_.keys.contains(key, hash));
    }
    [[nodiscard]] bool contains(const FlowKey& key) const {
        return contains(key, FlowKeyHash{}(key));
    }
    // `dump`: the last dump started when the flow ended; `at`: when it ended.
    // A key already kept keeps its place.
    void insert(const FlowKey& key, std::uint64_t dump, TimePoint at);
    // At the end of dump `seq`.
    void rotate(std::uint64_t seq, TimePoint now);

    // Room for `keys` in each generation, so a burst of short flows does not
    // grow (and fault in) a table key by key.
    void reserve(std::size_t keys) {
        younger_.keys.reserve(keys);
        older_.keys.reserve(keys);
    }

    [[nodiscard]] std::size_t size() const { return younger_.keys.size() + older_.keys.size(); }
    void append_keys(std::vector<FlowKey>& out) const;

  private:
    using Keys =
        tsl::robin_set<FlowKey, FlowKeyHash, std::equal_to<FlowKey>, std::allocator<FlowKey>, true>;
    struct Generation {
        Keys keys;
        std::uint64_t newest_dump = 0;
        TimePoint newest_at{};
    };
    std::uint64_t min_dumps_;
    std::chrono::nanoseconds ttl_;
    Generation younger_;
    Generation older_;
};

}  // namespace ctquota::core
