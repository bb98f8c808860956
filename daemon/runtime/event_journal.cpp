#include "runtime/event_journal.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

#include "core/sample_codec.hpp"

namespace ctquota::runtime {
namespace {

// A record: an 8-byte header (payload length, FNV-1a of the payload), then
// the payload padded to 8 bytes. The header is written after the payload, so
// a record cut short by a crash has none; a zero header ends a segment's
// records (the file is allocated zeroed). The checksum catches what a machine
// crash may leave instead.
constexpr std::size_t kHeader = 8;
constexpr std::size_t kMaxRecord = kHeader + ((core::kMaxEncodedSample + 7) & ~std::size_t{7});
constexpr const char* kSuffix = ".seg";

std::size_t padded(std::size_t n) {
    return (n + 7) & ~std::size_t{7};
}

std::uint32_t fnv1a(const std::uint8_t* p, std::size_t n) {
    std::uint32_t h = 2166136261u;
    for (std::size_t i = 0; i < n; ++i) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

std::string errno_text(const std::string& what, int err) {
    return what + ": " + std::strerror(err);
}

bool parse_segment_name(const std::string& name, std::uint64_t& start) {
    if (name.size() != 16 + std::strlen(kSuffix) || !name.ends_with(kSuffix)) {
        return false;
    }
    const std::string hex = name.substr(0, 16);
    char* end = nullptr;
    start = std::strtoull(hex.c_str(), &end, 16);
    return end == hex.c_str() + hex.size();
}

}  // namespace

EventJournal::EventJournal(std::filesystem::path dir, std::size_t segment_bytes)
    : dir_(std::move(dir)), segment_bytes_(std::max(segment_bytes, 16 * kMaxRecord)) {
    open_dir();
    bool made = false;
    id_ = load_or_make_id(&made);
    scan_existing();
    if (made && !segments_.empty()) {
        // Segments without the id that numbered them cannot be matched with
        // any stored position.
        spdlog::warn("journal {}: {} segments without an id file; removed", dir_.string(),
                     segments_.size());
        for (const auto& [start, size] : segments_) {
            std::filesystem::remove(segment_path(start));
        }
        segments_.clear();
        std::filesystem::remove(dir_ / "spill");
    }
    for (const auto& [start, size] : segments_) {
        run_start_ = std::max(run_start_, start + size);
    }
    has_spill_ = std::filesystem::exists(dir_ / "spill");
    // A new segment per run: the records of the last one may end in damage
    // (a machine crash), and nothing may follow damage.
    end_ = run_start_;
    open_segment(run_start_);
}

EventJournal::~EventJournal() {
    close_segment();
    if (!landing_.empty()) {
        ::munmap(landing_.data(), landing_.size());
    }
    if (lock_fd_ >= 0) {
        ::close(lock_fd_);
    }
}

void EventJournal::open_dir() {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) {
        throw JournalError("journal directory " + dir_.string() + ": " + ec.message());
    }
    const auto lock = dir_ / "lock";
    lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) {
        throw JournalError(errno_text("journal " + lock.string(), errno));
    }
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        throw JournalError("journal directory " + dir_.string() +
                           " is in use by another process (two daemons cannot share a journal)");
    }
}

std::uint64_t EventJournal::load_or_make_id(bool* made) {
    const auto path = dir_ / "id";
    std::ifstream in(path);
    std::string text;
    if (in >> text && text.size() == 16) {
        char* end = nullptr;
        const auto id = std::strtoull(text.c_str(), &end, 16);
        if (end != nullptr && *end == '\0' && id != 0) {
            return id;
        }
    }
    std::uint64_t id = 0;
    std::random_device rd;
    while (id == 0) {
        id = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }
    const auto tmp = dir_ / "id.tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << fmt::format("{:016x}\n", id);
        if (!out.flush()) {
            throw JournalError("journal: cannot write " + tmp.string());
        }
    }
    std::filesystem::rename(tmp, path);
    *made = true;
    return id;
}

void EventJournal::scan_existing() {
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
        std::uint64_t start = 0;
        if (entry.is_regular_file() && parse_segment_name(entry.path().filename(), start)) {
            segments_[start] = entry.file_size();
        }
    }
    stats_.segments = segments_.size();
    std::uint64_t disk = 0;
    for (const auto& [start, size] : segments_) {
        disk += size;
    }
    stats_.disk_bytes = disk;
}

std::filesystem::path EventJournal::segment_path(std::uint64_t start) const {
    return dir_ / fmt::format("{:016x}{}", start, kSuffix);
}

void EventJournal::open_segment(std::uint64_t start) {
    const auto path = segment_path(start);
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        throw JournalError(errno_text("journal: cannot create " + path.string(), errno));
    }
    // Allocated now, so that a full disk is an error here and not a SIGBUS
    // when a page of the mapping is first written.
    const int err = ::posix_fallocate(fd, 0, static_cast<off_t>(segment_bytes_));
    void* map = err == 0
                    ? ::mmap(nullptr, segment_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                    : MAP_FAILED;
    if (map == MAP_FAILED) {
        const int e = err != 0 ? err : errno;
        ::close(fd);
        std::filesystem::remove(path);
        throw JournalError(errno_text("journal: cannot allocate " + path.string(), e));
    }
    current_ = Segment{fd, static_cast<std::uint8_t*>(map), start, 0};
    std::lock_guard lock(segments_mu_);
    segments_[start] = segment_bytes_;
    stats_.segments = segments_.size();
    stats_.disk_bytes += segment_bytes_;
}

void EventJournal::close_segment() {
    if (current_.map != nullptr) {
        ::munmap(current_.map, segment_bytes_);
    }
    if (current_.fd >= 0) {
        ::close(current_.fd);
    }
    current_ = Segment{-1, nullptr, current_.start, current_.used};
}

std::uint64_t EventJournal::append(std::span<const core::FlowSample> samples) {
    for (const auto& s : samples) {
        if (current_.map == nullptr || current_.used + kMaxRecord > segment_bytes_) {
            const auto next = current_.start + segment_bytes_;
            close_segment();
            open_segment(next);  // after a failed attempt: tried again here
        }
        std::uint8_t* record = current_.map + current_.used;
        const std::size_t len = core::encode_sample(s, record + kHeader);
        const std::uint64_t header = len | (std::uint64_t{fnv1a(record + kHeader, len)} << 32);
        // The header last: a record is whole once its header is there.
        std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(record))
            .store(header, std::memory_order_release);
        const std::size_t size = kHeader + padded(len);
        current_.used += size;
        stats_.bytes.fetch_add(size, std::memory_order_relaxed);
        end_.store(current_.start + current_.used, std::memory_order_release);
    }
    stats_.records.fetch_add(samples.size(), std::memory_order_relaxed);
    return end();
}

bool EventJournal::read_segment(
    std::uint64_t start, std::size_t offset, std::uint64_t to,
    const std::function<void(const core::FlowSample&, std::uint64_t)>& fn,
    std::size_t& count) const {
    const auto path = segment_path(start);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return true;  // deleted meanwhile: covered
    }
    std::vector<std::uint8_t> data(static_cast<std::size_t>(::lseek(fd, 0, SEEK_END)));
    const ssize_t n = ::pread(fd, data.data(), data.size(), 0);
    ::close(fd);
    data.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    for (std::size_t off = offset; off + kHeader <= data.size();) {
        std::uint64_t header = 0;
        std::memcpy(&header, data.data() + off, kHeader);
        if (header == 0) {
            return true;
        }
        const auto len = static_cast<std::size_t>(header & 0xffffffffu);
        const std::uint8_t* payload = data.data() + off + kHeader;
        if (len > core::kMaxEncodedSample || off + kHeader + len > data.size() ||
            fnv1a(payload, len) != static_cast<std::uint32_t>(header >> 32)) {
            return false;
        }
        const auto sample = core::decode_sample({payload, len});
        if (!sample) {
            return false;
        }
        off += kHeader + padded(len);
        const std::uint64_t after = start + off;
        if (after > to) {
            return true;
        }
        fn(*sample, after);
        ++count;
    }
    return true;
}

std::size_t EventJournal::replay(
    std::uint64_t from, std::uint64_t to,
    const std::function<void(const core::FlowSample&, std::uint64_t)>& fn) const {
    std::map<std::uint64_t, std::uint64_t> segments;
    {
        std::lock_guard lock(segments_mu_);
        segments = segments_;
    }
    std::size_t count = 0;
    for (const auto& [start, size] : segments) {
        if (start + size <= from || start >= to) {
            continue;
        }
        const std::size_t offset = from > start ? static_cast<std::size_t>(from - start) : 0;
        if (!read_segment(start, offset, to, fn, count)) {
            ++stats_.corrupt_tails;
            spdlog::error(
                "journal segment {} ends in a damaged record; replay goes on with the next",
                segment_path(start).string());
        }
    }
    return count;
}

void EventJournal::covered(std::uint64_t position) {
    std::lock_guard lock(segments_mu_);
    covered_ = position;
    const auto writing = end();
    for (auto it = segments_.begin(); it != segments_.end();) {
        const auto [start, size] = *it;
        // Never the segment being written (it holds end()).
        if (start + size > position || (start <= writing && writing <= start + size)) {
            ++it;
            continue;
        }
        std::error_code ec;
        std::filesystem::remove(segment_path(start), ec);
        stats_.disk_bytes -= size;
        it = segments_.erase(it);
    }
    stats_.segments = segments_.size();
}

std::span<std::byte> EventJournal::landing_area(std::size_t bytes) {
    if (!landing_.empty()) {
        return landing_;
    }
    const auto path = dir_ / "landing";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        throw JournalError(errno_text("journal: cannot open " + path.string(), errno));
    }
    // Allocated (the new part zeroed) so that writing it never faults for space.
    const int err = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    void* map =
        err == 0 ? ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0)
                 : MAP_FAILED;
    const int e = err != 0 ? err : errno;
    ::close(fd);
    if (map == MAP_FAILED) {
        throw JournalError(errno_text("journal: cannot map " + path.string(), e));
    }
    // Resident, so that the kernel's copy into it never waits for a page (a
    // kill then would end the copy, and the datagram with it).
    if (::mlock(map, bytes) != 0) {
        spdlog::info("journal: landing area not locked in memory ({})", std::strerror(errno));
    }
    landing_ = {static_cast<std::byte*>(map), bytes};
    return landing_;
}

void EventJournal::write_spill(const std::string& bytes) {
    const auto tmp = dir_ / "spill.tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out.flush()) {
            throw JournalError("journal: cannot write " + tmp.string());
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, dir_ / "spill", ec);
    if (ec) {
        throw JournalError("journal: cannot rename " + tmp.string() + ": " + ec.message());
    }
    ++stats_.spills;
    stats_.spill_bytes = bytes.size();
    has_spill_ = true;
}

std::optional<std::string> EventJournal::read_spill() const {
    std::ifstream in(dir_ / "spill", std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void EventJournal::drop_spill() {
    if (has_spill_) {
        std::error_code ec;
        std::filesystem::remove(dir_ / "spill", ec);
        has_spill_ = false;
        stats_.spill_bytes = 0;
    }
}

}  // namespace ctquota::runtime
