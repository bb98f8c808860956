#include "conntrack/sysctl.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace ctquota::conntrack {
namespace {

std::string path_of(const std::string& name) {
    return "/proc/sys/" + name;
}

bool is_on(const std::optional<std::string>& v) {
    return v && !v->empty() && (*v)[0] == '1';
}

}  // namespace

std::optional<std::string> read_sysctl(const std::string& name) {
    std::ifstream in(path_of(name));
    std::string value;
    if (!in || !std::getline(in, value)) {
        return std::nullopt;
    }
    return value;
}

bool write_sysctl(const std::string& name, const std::string& value) {
    // open/write rather than a stream: the errno is what tells an operator
    // whether the capability or the mount (ProtectKernelTunables) is missing.
    const int fd = ::open(path_of(name).c_str(), O_WRONLY | O_CLOEXEC);
    const std::string line = value + "\n";
    const bool ok =
        fd >= 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    const int err = errno;
    if (fd >= 0) {
        ::close(fd);
    }
    if (!ok) {
        spdlog::warn(
            "cannot write {}: {} (needs CAP_NET_ADMIN in this network namespace and, "
            "under systemd's ProtectKernelTunables, the path in ReadWritePaths=)",
            path_of(name), std::strerror(err));
    }
    return ok;
}

KernelCheck ensure_conntrack_accounting(bool allow_enable) {
    KernelCheck check;
    const std::string acct = "net/netfilter/nf_conntrack_acct";
    const std::string tstamp = "net/netfilter/nf_conntrack_timestamp";
    auto value = read_sysctl(acct);
    if (!value) {
        throw std::runtime_error(
            "conntrack is not active in this network namespace (" + path_of(acct) +
            " is missing): load nf_conntrack and add a ruleset that uses 'ct'");
    }
    if (!is_on(value) && allow_enable) {
        if (write_sysctl(acct, "1")) {
            spdlog::warn("nf_conntrack_acct was off; turned it on (byte counters start now)");
        }
        value = read_sysctl(acct);
    }
    check.accounting_on = is_on(value);
    if (!check.accounting_on) {
        throw std::runtime_error(
            "nf_conntrack_acct is off and could not be turned on: run 'sysctl -w "
            "net.netfilter.nf_conntrack_acct=1' in this namespace (or set "
            "conntrack.enable_accounting_sysctl = true and give ctquotad CAP_NET_ADMIN with "
            "/proc/sys/net/netfilter writable)");
    }
    auto ts = read_sysctl(tstamp);
    if (!is_on(ts) && allow_enable && write_sysctl(tstamp, "1")) {
        ts = read_sysctl(tstamp);
    }
    check.timestamps_on = is_on(ts);
    if (!check.timestamps_on) {
        spdlog::warn("nf_conntrack_timestamp is off: flows are keyed by id and tuple only");
    }
    if (auto rmem = read_sysctl("net/core/rmem_max")) {
        check.rmem_max = std::stoull(*rmem);
    }
    return check;
}

}  // namespace ctquota::conntrack
