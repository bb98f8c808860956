// Giving up the capabilities only the BPF program's loading needed.
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "drops/drop_map.hpp"

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

namespace ctquota::drops {

std::string drop_bpf_capabilities() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (syscall(SYS_capget, &header, data) != 0) {
        return std::string("capget: ") + std::strerror(errno);
    }
    std::string problems;
    for (const int cap : {CAP_BPF, CAP_PERFMON}) {
        const auto word = static_cast<unsigned>(cap) / 32;
        const auto bit = 1u << (static_cast<unsigned>(cap) % 32);
        data[word].effective &= ~bit;
        data[word].permitted &= ~bit;
        data[word].inheritable &= ~bit;
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, cap, 0, 0);
        // Needs CAP_SETPCAP; without it the bounding set cannot grant it back anyway
        // once permitted is cleared (no file capabilities on ctquotad).
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EPERM && errno != EINVAL) {
            problems += std::string(" bounding set: ") + std::strerror(errno) + ";";
        }
    }
    if (syscall(SYS_capset, &header, data) != 0) {
        problems += std::string(" capset: ") + std::strerror(errno);
    }
    return problems;
}

}  // namespace ctquota::drops
