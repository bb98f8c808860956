#pragma once
// The parts of the configuration the accounting runtime reads ([conntrack],
// [accounting]). app::Config holds them; loading and validation live in app/.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace ctquota::runtime {

using namespace std::chrono_literals;

struct ConntrackConfig {
    std::chrono::nanoseconds poll_interval = 10s;
    std::uint64_t event_buffer_bytes = 128ull << 20;
    std::uint64_t max_event_buffer_bytes = 1ull << 30;
    std::uint64_t queue_samples = 4'000'000;  // reader -> accounting hand-off bound
    bool enable_accounting_sysctl = true;     // turn nf_conntrack_acct on if off
    bool reliable_events = true;              // NETLINK_BROADCAST_ERROR on the event socket
    // While DESTROY events arrive faster than this (a second's worth, measured
    // at the end of each poll interval), the next dump waits, up to
    // dump_defer_max longer: the kernel is busy ending entries, and a dump now
    // would mostly return, or end itself, flows whose DESTROY is due. 0: never.
    std::uint64_t dump_defer_events_per_s = 20'000;
    std::chrono::nanoseconds dump_defer_max = 10s;
};

struct AccountingConfig {
    std::chrono::nanoseconds flush_interval = 1s;
    std::string gateway_id;  // default: the host name
    std::chrono::nanoseconds retry_max = 30s;
};

// [journal]: the local event journal (runtime/event_journal.hpp).
struct JournalConfig {
    // Empty: $STATE_DIRECTORY/journal when the service manager gives a state
    // directory (systemd's StateDirectory=), otherwise no journal.
    std::filesystem::path dir;
    std::uint64_t segment_bytes = 4ull << 20;
    // While the database is away the journal would grow with every event:
    // once this much of it is not covered by a stored flush, the flusher
    // spills what it holds to the journal's directory and the journal before
    // it goes (core/spill_codec.hpp).
    std::uint64_t spill_after_bytes = 64ull << 20;
};

}  // namespace ctquota::runtime
