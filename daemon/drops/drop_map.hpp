#pragma once
// DropMap: the BPF program that records, per conntrack entry, the bytes the
// gateway dropped after conntrack counted them (ctquota_drops.bpf.c), its
// maps, and their pins. Opened once at start-up, while the daemon still has
// CAP_BPF and CAP_PERFMON (drop_bpf_capabilities() then gives them up):
// reading and erasing through the open map fds needs neither.
//
// Pinned in a bpffs directory, the program keeps recording while the daemon
// is down; a restart reuses the pins when they were made by the same program
// for the same network namespace (no capability needed then), and otherwise
// loads the program, keeps the recorded drops when the map is compatible,
// and replaces the link.

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/drop_table.hpp"
#include "drops/drop_config.hpp"

struct bpf_object;
struct bpf_link;

namespace ctquota::drops {

class DropMapError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct DropStats {
    std::uint64_t packets = 0;  // drops attributed to a flow since the program was loaded
    std::uint64_t bytes = 0;
    std::uint64_t map_full = 0;  // drops the map had no room for (billed)
};

class DropMap {
  public:
    // Throws DropMapError saying what failed and what it needs.
    static std::unique_ptr<DropMap> open(const DropConfig& config);
    ~DropMap();
    DropMap(const DropMap&) = delete;
    DropMap& operator=(const DropMap&) = delete;

    // False (errno kept) when the kernel refused.
    bool read_stats(DropStats& out) const;
    // The whole map, in batches. False (errno kept) when reading failed.
    bool read(std::vector<core::DropRecord>& out) const;
    // Erases these flows' entries; returns how many the kernel refused.
    std::size_t erase(const std::vector<core::FlowKey>& keys) const;

    [[nodiscard]] bool pinned() const { return pinned_; }
    [[nodiscard]] bool reused() const { return reused_; }
    [[nodiscard]] std::uint32_t max_flows() const { return max_flows_; }

  private:
    DropMap() = default;
    void open_pinned(const DropConfig& config, std::uint32_t netns, std::uint64_t hash);
    bool reuse_all(std::uint32_t netns, std::uint64_t hash, std::uint32_t max_flows);
    void load(const DropConfig& config, std::uint32_t netns, std::uint64_t hash);
    void attach();
    bool read_one_by_one(std::vector<core::DropRecord>& out) const;

    std::string dir_;  // empty: not pinned
    bool pinned_ = false;
    bool reused_ = false;
    std::uint32_t max_flows_ = 0;
    int drops_fd_ = -1;
    int stats_fd_ = -1;
    int config_fd_ = -1;
    bpf_object* object_ = nullptr;
    bpf_link* link_ = nullptr;
};

// Gives up CAP_PERFMON and CAP_BPF (enforce/ loaded its tc programs before:
// enforce/tc_programs.hpp), from every set: effective, permitted,
// inheritable, ambient, and the bounding set when allowed. Call before any
// thread starts: capabilities are per thread. Returns what could not be
// done, or "".
std::string drop_bpf_capabilities();

}  // namespace ctquota::drops
