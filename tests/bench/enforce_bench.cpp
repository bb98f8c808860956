// Enforcer benchmark: in a fresh network namespace (unshare, one per run)
// with a veth pair as the subscriber interface, apply N throttles + N blocks
// from cold, in batches of B subscribers per apply() (one nft transaction +
// one tc batch each). Prints one JSON line per run and the medians.
//   enforce_bench [N=10000] [B=2000] [runs=5]
// Needs root. Results: tests/bench/RESULTS.md.

#include <sched.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "enforce/enforcer.hpp"

using namespace ctquota;
using bench::cpu_ms;
using bench::median;
using Clock = std::chrono::steady_clock;

namespace {

core::Prefix host(std::uint32_t index) {  // 100.64.0.0/10: up to 4M addresses
    return core::Prefix::make(core::IpAddress::v4(0x64400000u + index + 1), 32);
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10000;
    const std::size_t batch = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 2000;
    const int runs = argc > 3 ? std::atoi(argv[3]) : 5;
    spdlog::set_level(spdlog::level::warn);
    std::vector<enforce::SubscriberTarget> targets;
    for (std::size_t i = 0; i < 2 * n; ++i) {
        enforce::SubscriberTarget t;
        t.id = static_cast<core::SubscriberId>(i + 1);
        t.prefixes = {host(static_cast<std::uint32_t>(i))};
        if (i < n) {
            t.state.kind = core::StateKind::Throttled;
            t.state.rate = core::Rate{2'000'000 + 8 * (i % 1000), 1'000'000};
        } else {
            t.state.kind = core::StateKind::Blocked;
            t.plan = i % 2 ? "prepaid" : "";
        }
        targets.push_back(t);
    }
    std::vector<double> totals, cpus, per_batch, reconciles, lifts;
    for (int run = 0; run < runs; ++run) {
        if (unshare(CLONE_NEWNET) != 0 ||
            std::system("ip link add ctqh2b0 type veth peer name ctqh2b1 && "
                        "ip link set ctqh2b0 up && ip link set ctqh2b1 up") != 0) {
            std::fprintf(stderr, "enforce_bench: cannot set up a network namespace (root?)\n");
            return 1;
        }
        enforce::EnforceConfig cfg;
        cfg.subscriber_interface = "ctqh2b0";
        cfg.delete_conntrack_on_block = true;
        enforce::Enforcer e(cfg);
        e.set_allowed({{"prepaid", {*core::Prefix::parse("198.18.0.53/32")}}});
        std::vector<double> batches;
        std::size_t errors = 0;
        const auto t0 = Clock::now();
        const double cpu0 = cpu_ms();
        for (std::size_t i = 0; i < targets.size(); i += batch) {
            const auto b0 = Clock::now();
            std::vector<enforce::SubscriberTarget> slice(
                targets.begin() + static_cast<std::ptrdiff_t>(i),
                targets.begin() + static_cast<std::ptrdiff_t>(std::min(i + batch, targets.size())));
            errors += e.apply(slice).errors.size();
            batches.push_back(std::chrono::duration<double, std::milli>(Clock::now() - b0).count());
        }
        const double total = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        const double cpu = cpu_ms() - cpu0;
        const auto r0 = Clock::now();
        const auto again = e.reconcile(targets);  // read back 2N subscribers, change nothing
        const double rec = std::chrono::duration<double, std::milli>(Clock::now() - r0).count();
        const auto state = e.read_back();
        auto lifted = targets;  // everybody back to normal, in one apply()
        for (auto& t : lifted) {
            t.state = core::DesiredState{};
        }
        const auto l0 = Clock::now();
        errors += e.apply(lifted).errors.size();
        const double lift = std::chrono::duration<double, std::milli>(Clock::now() - l0).count();
        const auto after_lift = e.read_back();
        std::printf(
            "{\"run\":%d,\"subscribers\":%zu,\"batch\":%zu,\"total_ms\":%.1f,\"cpu_ms\":%.1f,"
            "\"batch_median_ms\":"
            "%.1f,\"batch_max_ms\":%.1f,\"errors\":%zu,\"reconcile_ms\":%.1f,"
            "\"reconcile_changed\":%zu,\"read_back_subscribers\":%zu,\"tc_classes\":%zu,"
            "\"lift_ms\":%.1f,\"after_lift_subscribers\":%zu}\n",
            run, targets.size(), batch, total, cpu, median(batches),
            *std::max_element(batches.begin(), batches.end()), errors, rec,
            again.subscribers_changed, state.subscribers.size(), state.tc_classes, lift,
            after_lift.subscribers.size());
        std::fflush(stdout);
        totals.push_back(total);
        cpus.push_back(cpu);
        per_batch.push_back(median(batches));
        reconciles.push_back(rec);
        lifts.push_back(lift);
    }
    std::printf(
        "{\"median_total_ms\":%.1f,\"median_cpu_ms\":%.1f,\"median_batch_ms\":%.1f,"
        "\"median_reconcile_ms\":%.1f,\"median_lift_ms\":%.1f}\n",
        median(totals), median(cpus), median(per_batch), median(reconciles), median(lifts));
    return 0;
}
