#pragma once
// EventJournal: a local, append-only record of every conntrack event the
// reader takes from the event socket, written before the event leaves the
// socket. A flush stores the position of the last event it covers in the same
// transaction as the totals; at start-up the events after that position are
// replayed, so a DESTROY read shortly before a kill -9 is never lost (the
// ledger's tombstones drop the ones applied twice).
//
// Segment files of a fixed size, named by their first position, mapped and
// written with plain stores: a record is in the page cache, and survives the
// process, once it is written. Nothing is fsynced: a machine crash may lose
// the last seconds (the kernel's writeback interval). Segments wholly before
// the last committed position are deleted.
//
// One writer thread (append); replay, covered() and the accessors may be
// called from others.

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/flow.hpp"

namespace ctquota::runtime {

class JournalError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct JournalStats {
    std::atomic<std::uint64_t> records{0};
    std::atomic<std::uint64_t> bytes{0};          // written, headers and padding included
    std::atomic<std::uint64_t> disk_bytes{0};     // segments on disk now
    std::atomic<std::uint64_t> segments{0};       // segments on disk now
    std::atomic<std::uint64_t> corrupt_tails{0};  // segments whose records end in garbage
    std::atomic<std::uint64_t> spills{0};         // spills written
    std::atomic<std::uint64_t> spill_bytes{0};    // the size of the spill on disk now
};

class EventJournal {
  public:
    // Takes the directory (created if missing) for this process alone: a
    // second daemon on the same directory gets a JournalError, as does a
    // directory that cannot be written.
    explicit EventJournal(std::filesystem::path dir, std::size_t segment_bytes = 4 << 20);
    ~EventJournal();
    EventJournal(const EventJournal&) = delete;
    EventJournal& operator=(const EventJournal&) = delete;

    // Random, made with the journal: a stored position means something only
    // for the journal of the same id.
    [[nodiscard]] std::uint64_t id() const { return id_; }
    // Where this process's first record went (past everything found at start).
    [[nodiscard]] std::uint64_t run_start() const { return run_start_; }
    // Position after the last record appended.
    [[nodiscard]] std::uint64_t end() const { return end_.load(std::memory_order_acquire); }

    // One record per sample; returns the position after the last. Throws
    // JournalError when a segment cannot be made (disk full).
    std::uint64_t append(std::span<const core::FlowSample> samples);

    // Calls fn for every record starting at or after `from` and ending at or
    // before `to`, oldest first, with the position after it. Returns how many.
    std::size_t replay(std::uint64_t from, std::uint64_t to,
                       const std::function<void(const core::FlowSample&, std::uint64_t)>& fn) const;

    // Everything before `position` is stored elsewhere now: segments that end
    // at or before it are deleted (never the one being written).
    void covered(std::uint64_t position);
    // Bytes after the last covered position: what a restart would replay.
    [[nodiscard]] std::uint64_t uncovered_bytes() const {
        const auto c = covered_.load(std::memory_order_relaxed);
        const auto e = end();
        return e > c ? e - c : 0;
    }

    // The spill (core/spill_codec.hpp) beside the segments: written whole (a
    // temporary file renamed over the last one), so a crash leaves the old
    // spill or the new one. write_spill throws JournalError.
    void write_spill(const std::string& bytes);
    [[nodiscard]] std::optional<std::string> read_spill() const;
    void drop_spill();

    // The file "landing" beside the segments, `bytes` long, mapped shared for
    // the event reader's batches (conntrack/event_landing.hpp): what was in it
    // when the last process died is still there. Mapped once, populated and
    // locked in memory where allowed; throws JournalError.
    std::span<std::byte> landing_area(std::size_t bytes);

    [[nodiscard]] const JournalStats& stats() const { return stats_; }
    [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }

  private:
    struct Segment {
        int fd = -1;
        std::uint8_t* map = nullptr;
        std::uint64_t start = 0;
        std::size_t used = 0;
    };

    void open_dir();
    std::uint64_t load_or_make_id(bool* made);
    void scan_existing();
    void open_segment(std::uint64_t start);
    void close_segment();
    [[nodiscard]] std::filesystem::path segment_path(std::uint64_t start) const;
    // Records of one segment file from byte `offset`, until the first empty
    // or damaged header. Returns false when it ended in damage.
    bool read_segment(std::uint64_t start, std::size_t offset, std::uint64_t to,
                      const std::function<void(const core::FlowSample&, std::uint64_t)>& fn,
                      std::size_t& count) const;

    std::filesystem::path dir_;
    std::size_t segment_bytes_;
    int lock_fd_ = -1;
    std::uint64_t id_ = 0;
    std::uint64_t run_start_ = 0;
    std::atomic<std::uint64_t> end_{0};
    std::atomic<std::uint64_t> covered_{0};
    bool has_spill_ = false;
    std::span<std::byte> landing_;
    Segment current_;
    mutable std::mutex segments_mu_;
    std::map<std::uint64_t, std::uint64_t> segments_;  // start -> bytes on disk
    mutable JournalStats stats_;                       // replay() counts damaged tails
};

}  // namespace ctquota::runtime
