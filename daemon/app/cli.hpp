#pragma once
// Command line: `ctquotad [--config FILE] [--log-level L] [COMMAND ...]`.
// No command runs the daemon; the admin commands stand in until the API exists.

namespace ctquota::app {

int run_cli(int argc, char** argv);

}  // namespace ctquota::app
