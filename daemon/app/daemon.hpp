#pragma once
// The daemon's wiring: start-up checks, threads, signals, shutdown.

#include "app/config.hpp"

namespace ctquota::app {

// Runs until SIGTERM or SIGINT; returns the process exit code.
int run_daemon(const Config& config);

// The schema directory: config, else the one this build was made from.
std::filesystem::path schema_dir(const Config& config);

}  // namespace ctquota::app
