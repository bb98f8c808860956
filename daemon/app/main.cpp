// ctquotad: conntrack-based per-subscriber accounting. See README.md.
#include "app/cli.hpp"

int main(int argc, char** argv) {
    return ctquota::app::run_cli(argc, argv);
}
