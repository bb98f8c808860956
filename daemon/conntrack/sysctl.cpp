#include "conntrack/sysctl.hpp"

#include <spdlog/spdlog.h>

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
    std::ofstream out(path_of(name));
    out << value << "\n";
    out.flush();
    return static_cast<bool>(out);
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
            "conntrack.enable_accounting_sysctl = true and run as root)");
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
