#pragma once
// What the C++ benchmarks share: the process's CPU time and the median.

#include <sys/resource.h>

#include <algorithm>
#include <vector>

namespace ctquota::bench {

// User + system time of this process in ms (netlink work the kernel does on
// our behalf runs in its context and counts here).
inline double cpu_ms() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return (static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3) +
           (static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3);
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace ctquota::bench
