#include "api/auth_failure_log.hpp"

#include "core/duration.hpp"

namespace ctquota::api {

AuthFailureLog::AuthFailureLog(std::chrono::nanoseconds interval, std::size_t max_addresses)
    : interval_(interval), max_addresses_(max_addresses) {}

std::string AuthFailureLog::summary(const std::string& address, const Window& w) const {
    return "api: " + std::to_string(w.suppressed) + " more 401s from " + address + " within " +
           core::format_duration(interval_) + " of its first";
}

void AuthFailureLog::close_expired(core::TimePoint now, std::vector<std::string>& lines) {
    if (now < next_sweep_) {
        return;
    }
    next_sweep_ = now + interval_;
    for (auto it = windows_.begin(); it != windows_.end();) {
        if (it->second.started + interval_ > now) {
            ++it;
            continue;
        }
        if (it->second.suppressed > 0) {
            lines.push_back(summary(it->first, it->second));
        }
        it = windows_.erase(it);
    }
    take_untracked(lines);
}

void AuthFailureLog::take_untracked(std::vector<std::string>& lines) {
    if (untracked_ > 0) {
        lines.push_back("api: " + std::to_string(untracked_) +
                        " 401s from further addresses (more than " +
                        std::to_string(max_addresses_) + " at once) not logged one by one");
        untracked_ = 0;
    }
}

std::vector<std::string> AuthFailureLog::record(const std::string& address, const std::string& what,
                                                const std::string& reason, core::TimePoint now) {
    std::lock_guard lock(mu_);
    std::vector<std::string> lines;
    close_expired(now, lines);
    auto it = windows_.find(address);
    if (it != windows_.end() && it->second.started + interval_ <= now) {
        if (it->second.suppressed > 0) {
            lines.push_back(summary(it->first, it->second));
        }
        windows_.erase(it);
        it = windows_.end();
    }
    if (it != windows_.end()) {
        ++it->second.suppressed;
    } else if (windows_.size() >= max_addresses_) {
        ++untracked_;
    } else {
        windows_.emplace(address, Window{now, 0});
        lines.push_back("api: 401 for " + address + " on " + what + ": " + reason +
                        " (further 401s from it within " + core::format_duration(interval_) +
                        " are summed up)");
    }
    return lines;
}

std::vector<std::string> AuthFailureLog::flush() {
    std::lock_guard lock(mu_);
    std::vector<std::string> lines;
    for (const auto& [address, window] : windows_) {
        if (window.suppressed > 0) {
            lines.push_back(summary(address, window));
        }
    }
    windows_.clear();
    take_untracked(lines);
    return lines;
}

}  // namespace ctquota::api
