// Deleting blocked subscribers' conntrack entries (enforce/conntrack_flush):
// in a fresh network namespace per run (unshare), E UDP entries are created
// through ctnetlink for 2N subscribers (100.64.0.0/10, one /32 each; IPv6
// entries for every fourth one, from its 2001:db8::/64), then N of them are
// blocked at once, as at a cycle boundary. Reports the time and CPU of
// delete_conntrack_entries and checks that exactly the blocked subscribers'
// entries went. One JSON line per run, then the medians.
//   ct_flush_bench [N=10000] [E=200000] [runs=3]
// Needs root. Results: tests/bench/RESULTS.md.

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "bench_util.hpp"
#include "enforce/conntrack_flush.hpp"

using namespace ctquota;
using bench::cpu_ms;
using bench::median;
using Clock = std::chrono::steady_clock;

namespace {

struct Handle {
    nfct_handle* h = nfct_open(CONNTRACK, 0);
    ~Handle() {
        if (h != nullptr) {
            nfct_close(h);
        }
    }
};

std::uint32_t subscriber_v4(std::uint32_t sub) {
    return 0x64400000u + sub + 1;  // 100.64.0.1 + sub
}

void v6_of(std::uint32_t sub, std::uint32_t host, unsigned char out[16]) {
    std::memset(out, 0, 16);
    out[0] = 0x20;  // 2001:db8:<sub>::/64
    out[1] = 0x01;
    out[2] = 0x0d;
    out[3] = 0xb8;
    out[4] = static_cast<unsigned char>(sub >> 8);
    out[5] = static_cast<unsigned char>(sub);
    out[15] = static_cast<unsigned char>(host);
    out[14] = static_cast<unsigned char>(host >> 8);
}

// Entry e of subscriber `sub`: UDP to a server in 198.18.0.0/15 (or
// 2001:db8:ffff::/64), a distinct source port per entry.
bool create_entry(nfct_handle* h, std::uint32_t sub, std::uint32_t e, bool v6) {
    std::unique_ptr<nf_conntrack, decltype(&nfct_destroy)> ct(nfct_new(), nfct_destroy);
    const auto sport = htons(static_cast<std::uint16_t>(1024 + e % 60000));
    const auto dport = htons(static_cast<std::uint16_t>(53 + e / 60000));
    nfct_set_attr_u8(ct.get(), ATTR_L4PROTO, IPPROTO_UDP);
    nfct_set_attr_u8(ct.get(), ATTR_REPL_L4PROTO, IPPROTO_UDP);
    nfct_set_attr_u8(ct.get(), ATTR_REPL_L3PROTO, v6 ? AF_INET6 : AF_INET);
    if (v6) {
        unsigned char src[16];
        unsigned char dst[16];
        v6_of(sub, 1, src);
        v6_of(0xffff, 53, dst);
        nfct_set_attr_u8(ct.get(), ATTR_L3PROTO, AF_INET6);
        nfct_set_attr(ct.get(), ATTR_IPV6_SRC, src);
        nfct_set_attr(ct.get(), ATTR_IPV6_DST, dst);
        nfct_set_attr(ct.get(), ATTR_REPL_IPV6_SRC, dst);
        nfct_set_attr(ct.get(), ATTR_REPL_IPV6_DST, src);
    } else {
        const auto src = htonl(subscriber_v4(sub));
        const auto dst = htonl(0xc6120000u + 1 + e % 1000);  // 198.18.0.x
        nfct_set_attr_u8(ct.get(), ATTR_L3PROTO, AF_INET);
        nfct_set_attr_u32(ct.get(), ATTR_IPV4_SRC, src);
        nfct_set_attr_u32(ct.get(), ATTR_IPV4_DST, dst);
        nfct_set_attr_u32(ct.get(), ATTR_REPL_IPV4_SRC, dst);
        nfct_set_attr_u32(ct.get(), ATTR_REPL_IPV4_DST, src);
    }
    nfct_set_attr_u16(ct.get(), ATTR_PORT_SRC, sport);
    nfct_set_attr_u16(ct.get(), ATTR_PORT_DST, dport);
    nfct_set_attr_u16(ct.get(), ATTR_REPL_PORT_SRC, dport);
    nfct_set_attr_u16(ct.get(), ATTR_REPL_PORT_DST, sport);
    nfct_set_attr_u32(ct.get(), ATTR_TIMEOUT, 3600);
    return nfct_query(h, NFCT_Q_CREATE, ct.get()) == 0;
}

int count_one(enum nf_conntrack_msg_type, nf_conntrack*, void* data) {
    ++*static_cast<std::size_t*>(data);
    return NFCT_CB_CONTINUE;
}

std::size_t count_entries(nfct_handle* h) {
    std::size_t n = 0;
    nfct_callback_register(h, NFCT_T_ALL, count_one, &n);
    std::uint32_t family = AF_UNSPEC;
    nfct_query(h, NFCT_Q_DUMP, &family);
    nfct_callback_unregister(h);
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    const auto n =
        static_cast<std::uint32_t>(argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10000);
    const auto entries =
        static_cast<std::uint32_t>(argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 200000);
    const int runs = argc > 3 ? std::atoi(argv[3]) : 3;
    if (n == 0 || entries < 2 * n) {
        std::fprintf(stderr, "ct_flush_bench: need N > 0 and E >= 2N\n");
        return 2;
    }
    std::vector<core::Prefix> blocked;  // the first N subscribers: /32 and, every fourth, a /64
    for (std::uint32_t s = 0; s < n; ++s) {
        blocked.push_back(core::Prefix::make(core::IpAddress::v4(subscriber_v4(s)), 32));
        if (s % 4 == 0) {
            unsigned char a[16];
            v6_of(s, 0, a);
            blocked.push_back(core::Prefix::make(core::IpAddress::v6_bytes(a), 64));
        }
    }
    std::vector<double> times, cpus;
    for (int run = 0; run < runs; ++run) {
        if (unshare(CLONE_NEWNET) != 0) {
            std::fprintf(stderr, "ct_flush_bench: cannot unshare a network namespace (root?)\n");
            return 1;
        }
        Handle h;
        std::size_t expected = 0;
        for (std::uint32_t e = 0; e < entries; ++e) {
            const auto sub = e % (2 * n);
            const bool v6 = sub % 4 == 0 && (e / (2 * n)) % 2 == 1;
            if (!create_entry(h.h, sub, e, v6)) {
                std::perror("ct_flush_bench: creating a conntrack entry");
                return 1;
            }
            expected += sub < n ? 1 : 0;
        }
        const auto t0 = Clock::now();
        const double c0 = cpu_ms();
        const auto result = enforce::delete_conntrack_entries(blocked);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        const double cpu = cpu_ms() - c0;
        const auto left = count_entries(h.h);
        std::printf(
            "{\"run\":%d,\"blocked_subscribers\":%u,\"prefixes\":%zu,\"entries\":%u,"
            "\"deleted\":%zu,\"expected\":%zu,\"left\":%zu,\"ms\":%.1f,\"cpu_ms\":%.1f,"
            "\"error\":\"%s\"}\n",
            run, n, blocked.size(), entries, result.deleted, expected, left, ms, cpu,
            result.error.c_str());
        std::fflush(stdout);
        if (result.deleted != expected || left != entries - expected || !result.error.empty()) {
            std::fprintf(stderr, "ct_flush_bench: wrong entries deleted\n");
            return 1;
        }
        times.push_back(ms);
        cpus.push_back(cpu);
    }
    std::printf("{\"median_ms\":%.1f,\"median_cpu_ms\":%.1f}\n", median(times), median(cpus));
    return 0;
}
