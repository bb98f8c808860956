#pragma once
// [drops] of the configuration: attributing the gateway's drops to flows.
// app::Config holds it; loading and validation live in app/.

#include <cstdint>
#include <filesystem>

namespace ctquota::drops {

struct DropConfig {
    // off: bill what conntrack counted; auto: subtract the drops when the
    // BPF program can be loaded (or reused), warn otherwise; required: a
    // daemon that cannot do it does not start.
    enum class Mode : std::uint8_t { Off, Auto, Required } mode = Mode::Auto;
    // Where the program's link and maps are pinned (a bpffs), so that they
    // outlive the daemon: drops during a restart or a crash are recorded.
    std::filesystem::path pin_dir = "/sys/fs/bpf/ctquota";
    // Flows with drops not yet read that the kernel's map holds.
    std::uint32_t max_flows = 65536;
};

}  // namespace ctquota::drops
