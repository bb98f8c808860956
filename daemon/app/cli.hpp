#pragma once
// Command line: `ctquotad [--config FILE] [--log-level L] [COMMAND ...]`.
// No command runs the daemon; the admin commands work on the database directly.

#include <stdexcept>

namespace ctquota::app {

// A command line that does not parse: printed with the usage text, exit code 2.
class UsageError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

int run_cli(int argc, char** argv);

}  // namespace ctquota::app
