#pragma once
// Log lines for refused credentials (401) at a bounded rate, so that a
// client hammering the API with a bad or revoked token cannot flood the log
// yet the operator still learns who it is: the first 401 from a client
// address in an interval is one line naming the address, the route and why;
// the rest are counted, and one line sums them up once the interval is over
// (at the next 401 from anyone, or at stop). At most `max_addresses` are
// tracked at once; 401s from further addresses are summed up together.
// Pure: the caller passes the time and writes the lines.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.hpp"

namespace ctquota::api {

class AuthFailureLog {
  public:
    explicit AuthFailureLog(std::chrono::nanoseconds interval, std::size_t max_addresses = 1024);

    // The lines to log for one 401 to `address` on `what` (method and path)
    // because of `reason`, at `now`. Thread-safe.
    std::vector<std::string> record(const std::string& address, const std::string& what,
                                    const std::string& reason, core::TimePoint now);
    // The summaries of every interval still open (at stop).
    std::vector<std::string> flush();

  private:
    struct Window {
        core::TimePoint started;
        std::uint64_t suppressed = 0;
    };
    void close_expired(core::TimePoint now, std::vector<std::string>& lines);
    void take_untracked(std::vector<std::string>& lines);
    [[nodiscard]] std::string summary(const std::string& address, const Window& w) const;

    std::chrono::nanoseconds interval_;
    std::size_t max_addresses_;
    std::mutex mu_;
    std::unordered_map<std::string, Window> windows_;
    std::uint64_t untracked_ = 0;  // 401s from addresses past max_addresses_
    core::TimePoint next_sweep_{};
};

}  // namespace ctquota::api
