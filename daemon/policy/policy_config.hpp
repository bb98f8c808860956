#pragma once
// The parts of the configuration the policy engine reads ([policies] and the
// database it keeps its own connections to). app::Config holds them.

#include <chrono>
#include <filesystem>
#include <string>

namespace ctquota::policy {

using namespace std::chrono_literals;

struct PoliciesConfig {
    std::filesystem::path dir = "/etc/ctquota/policies";  // one <plan>.toml per plan
    std::chrono::nanoseconds reconcile_interval = 60s;    // full kernel read-back and repair
};

}  // namespace ctquota::policy
