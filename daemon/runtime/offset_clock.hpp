#pragma once
// The daemon's clock: the system clock plus the operator's clock offset
// ([clock] offset_file, deploy/ctquotad.toml), so a staging gateway or an
// acceptance test can move the daemon to the end of a billing cycle without
// waiting for it. Without the file it is the system clock.

#include <atomic>
#include <filesystem>

#include "core/clock.hpp"

namespace ctquota::runtime {

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

}  // namespace ctquota::runtime
