// The enforcement kernel tests run in a network namespace of their own:
// unshare(CLONE_NEWNET) before doctest starts, then a veth pair (the
// "subscriber interface") is created inside it. Nothing outside is touched,
// and the namespace disappears with the process, also when a test fails.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
    if (unshare(CLONE_NEWNET) != 0) {
        std::fprintf(stderr, "enforce_tests: unshare(CLONE_NEWNET): %s (needs root)\n",
                     std::strerror(errno));
        return 1;
    }
    // Tests may use ip/nft/tc to prepare and to check; the code under test never does.
    if (std::system("ip link set lo up && ip link add ctqh2a type veth peer name ctqh2b && "
                    "ip link set ctqh2a up && ip link set ctqh2b up") != 0) {
        std::fprintf(stderr, "enforce_tests: cannot create the veth pair\n");
        return 1;
    }
    spdlog::set_level(spdlog::level::off);
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
