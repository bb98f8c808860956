#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

// libpqxx 6.4 leaks the PGresult of a statement that meets a broken connection
// (reproduced with libpqxx alone: terminate the backend, then exec), and the
// connection-loss tests do exactly that. Only blocks allocated inside libpq
// are ignored: ctquota never allocates there directly, and a leaked libpqxx
// object of ours would still show through its C++ allocation.
extern "C" __attribute__((used)) const char* __lsan_default_suppressions() {
    return "leak:libpq.so\n";
}
