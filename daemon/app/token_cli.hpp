#pragma once
// `ctquotad token create|list|revoke`: API tokens, administered on the
// database directly (a token is needed before the API can be used at all).

#include <string>
#include <vector>

#include "app/config.hpp"

namespace ctquota::app {

// `args` is the whole command, starting with "token". Throws UsageError on a
// malformed command line; returns the exit code.
int run_token_command(const Config& config, const std::vector<std::string>& args);

}  // namespace ctquota::app
