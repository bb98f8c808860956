#pragma once
// The daemon's clock: the system clock, plus (for tests only) an offset read
// from [testing] clock_offset_file, so a test can move the daemon to the end
// of a billing cycle without waiting for it.

#include <atomic>
#include <filesystem>

#include "core/clock.hpp"

namespace ctquota::app {

class OffsetClock final : public core::Clock {
  public:
    explicit OffsetClock(std::filesystem::path offset_file = {});
    [[nodiscard]] core::TimePoint now() const override;
    // Re-reads the offset file when it changed; cheap when it did not.
    void refresh();

  private:
    std::filesystem::path file_;
    std::filesystem::file_time_type seen_{};
    std::atomic<std::int64_t> offset_ns_{0};
};

}  // namespace ctquota::app
