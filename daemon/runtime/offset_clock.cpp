#include "runtime/offset_clock.hpp"

#include <spdlog/spdlog.h>

#include <fstream>
#include <system_error>

namespace ctquota::runtime {

OffsetClock::OffsetClock(std::filesystem::path offset_file) : file_(std::move(offset_file)) {
    refresh();
}

core::TimePoint OffsetClock::now() const {
    const auto system =
        std::chrono::time_point_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now());
    return system + std::chrono::nanoseconds{offset_ns_.load(std::memory_order_relaxed)};
}

void OffsetClock::refresh() {
    if (file_.empty()) {
        return;
    }
    std::error_code ec;
    const auto mtime = std::filesystem::last_write_time(file_, ec);
    if (ec || mtime == seen_) {
        return;
    }
    seen_ = mtime;
    std::ifstream in(file_);
    double seconds = 0;
    if (!(in >> seconds)) {
        spdlog::warn("clock.offset_file {}: not a number of seconds; offset unchanged",
                     file_.string());
        return;
    }
    offset_ns_.store(static_cast<std::int64_t>(seconds * 1e9), std::memory_order_relaxed);
    spdlog::warn("clock.offset_file: the daemon's clock is now {:.3f} s ahead of the system clock",
                 seconds);
}

}  // namespace ctquota::runtime
