#pragma once
// The only way core code learns the time: a Clock passed in.

#include <chrono>

namespace ctquota::core {

using TimePoint = std::chrono::sys_time<std::chrono::nanoseconds>;

class Clock {
  public:
    virtual ~Clock() = default;
    [[nodiscard]] virtual TimePoint now() const = 0;
};

class SystemClock final : public Clock {
  public:
    [[nodiscard]] TimePoint now() const override {
        return std::chrono::time_point_cast<std::chrono::nanoseconds>(
            std::chrono::system_clock::now());
    }
};

// For tests: time moves only when told to.
class ManualClock final : public Clock {
  public:
    explicit ManualClock(TimePoint start) : now_(start) {}
    [[nodiscard]] TimePoint now() const override { return now_; }
    void set(TimePoint t) { now_ = t; }
    void advance(std::chrono::nanoseconds d) { now_ += d; }

  private:
    TimePoint now_;
};

}  // namespace ctquota::core
