#pragma once
// libnftables JSON for table `inet <table>`: commands built as values (pure,
// testable) and `list table` output parsed back into kernel_model values.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "enforce/enforce_config.hpp"
#include "enforce/kernel_model.hpp"

namespace ctquota::enforce::nftjson {

using Json = nlohmann::json;

// Table, maps and chains (no elements): idempotent, its own transaction
// (libnftables 1.0.6 cannot add elements to an interval map created in the
// same JSON batch). With `refill_chains` the block and forward chains are
// flushed and refilled atomically; without, only missing objects are added.
// From the config: the table, the forward hook's priority, the mark rules
// (a nonzero no_offload_mark) and, with a subscriber interface, a chain
// head that looks up one address per direction.
Json skeleton(const EnforceConfig& cfg, bool refill_chains = true);
// True when `listing` (`list table`) already holds exactly the skeleton's
// chains and rules for `cfg`: a restart then keeps them (same rules, same
// handles, and never a moment without them).
bool skeleton_in_place(const Json& listing, const EnforceConfig& cfg);
// Creates the plan's allow sets and chain if missing (no elements; own transaction).
void plan_containers(Json& cmds, const std::string& table, const std::string& plan);
// Refills the plan's allow sets and its chain (atomic inside a transaction).
void plan_contents(Json& cmds, const std::string& table, const std::string& plan,
                   const std::vector<core::Prefix>& allowed);
void delete_plan(Json& cmds, const std::string& table, const std::string& plan);

// Accumulates many subscribers' deltas into one transaction: element
// deletions grouped per map, then object deletions, object additions,
// element additions grouped per map.
class Batch {
  public:
    explicit Batch(std::string table) : table_(std::move(table)) {}
    void add(const SubscriberDelta& delta);
    // Instead of this batch's element deletions and additions in `set`: flush
    // it and add `contents` (owner, element), all of it after the change.
    // libnftables 1.0.6 spends time proportional to the set's size on every
    // deleted interval element (1000 of 10k: 3 s); a refill costs what adding
    // costs. Call after add().
    void replace(const std::string& set,
                 const std::vector<std::pair<core::SubscriberId, Element>>& contents);
    [[nodiscard]] std::size_t commands() const { return commands_; }
    // The JSON document; `before`: extra commands placed first. Element
    // lists are rendered as text directly: tens of thousands of small JSON
    // values cost more (allocation) than the kernel work they describe.
    [[nodiscard]] std::string build(const Json& before = Json::array()) const;

  private:
    std::string table_;
    std::map<std::string, std::string> del_elements_;  // set -> comma-separated keys
    Json del_objects_ = Json::array();
    Json add_objects_ = Json::array();
    std::map<std::string, std::string> add_elements_;  // set -> comma-separated elements
    std::set<std::string> flushed_;                    // sets replaced as a whole
    std::size_t commands_ = 0;
};

struct ParsedElement {
    core::Prefix key;
    std::string value;
    std::optional<core::SubscriberId> owner;  // from the element comment
};

struct ParsedTable {
    bool present = false;
    std::map<std::string, std::vector<ParsedElement>> maps;  // our maps, by name
    std::map<std::string, LimitObject> limits;
    std::map<std::string, std::pair<QuotaObject, std::uint64_t>> quotas;  // object, used bytes
    std::set<std::string> chains;
    std::map<std::string, std::vector<core::Prefix>> allow_sets;  // allow_<plan>_v4/_v6
};

// Output of `list table inet <table>` (JSON); throws std::runtime_error on junk.
ParsedTable parse_table(const Json& output);
std::optional<core::Prefix> parse_key(const Json& key);

}  // namespace ctquota::enforce::nftjson
