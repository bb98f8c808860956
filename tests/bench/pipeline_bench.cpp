// In-process pipeline benchmark: samples/s through ledger + index +
// accumulation, single thread, with N subscribers and M live flows.
//
//   pipeline_bench [subscribers=100000] [flows=1000000] [rounds=3]
//
// Each round: one dump that sees every flow for the first time, two dumps of
// progress, then a DESTROY per flow; the rate of each phase is printed and the
// median over rounds summarised. Checks that credited bytes equal the final
// counters, so a fast but wrong pipeline fails loudly.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/accounting.hpp"
#include "core/calendar.hpp"

using namespace ctquota;
using Clock = std::chrono::steady_clock;

namespace {

core::IpAddress v4(std::uint32_t x) {
    return core::IpAddress::v4(x);
}

std::vector<core::FlowSample> make_flows(std::size_t subscribers, std::size_t flows) {
    std::vector<core::FlowSample> out(flows);
    const std::uint32_t base = (100u << 24) | (64u << 16);
    for (std::size_t i = 0; i < flows; ++i) {
        auto& s = out[i];
        s.id = static_cast<std::uint32_t>(i * 2654435761u);
        const auto sub = static_cast<std::uint32_t>(i % subscribers);
        s.orig = {v4(base + sub),
                  v4((198u << 24) | (18u << 16) | static_cast<std::uint32_t>(i % 65000)),
                  static_cast<std::uint16_t>(1024 + i % 60000), 443, 6};
        s.reply = {s.orig.dst, v4((198u << 24) | (18u << 16) | 1), 443, s.orig.src_port, 6};
        s.start_ns = 1'000'000 + i;
    }
    return out;
}

double run_phase(core::Accounting& acc, std::vector<core::FlowSample>& flows, core::SampleKind kind,
                 std::uint64_t step, core::TimePoint now) {
    for (auto& s : flows) {
        s.kind = kind;
        s.orig_counters.bytes += step * 100;
        s.orig_counters.packets += step;
        s.reply_counters.bytes += step * 1400;
        s.reply_counters.packets += step;
    }
    const auto t0 = Clock::now();
    for (const auto& s : flows) {
        acc.apply(s, now);
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    return static_cast<double>(flows.size()) / secs;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t subscribers = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100000;
    const std::size_t n_flows = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1000000;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;

    std::vector<core::Binding> bindings;
    for (std::size_t i = 0; i < subscribers; ++i) {
        bindings.push_back(
            {static_cast<core::SubscriberId>(i),
             core::Prefix::make(v4((100u << 24) | (64u << 16) | static_cast<std::uint32_t>(i)), 32),
             core::TimePoint{}, std::nullopt});
    }
    auto index = std::make_shared<const core::SubscriberIndex>(std::move(bindings));
    const core::ManualClock clock(core::TimePoint{std::chrono::seconds{1'800'000'000}});
    const auto now = clock.now();

    std::vector<double> first, progress, destroy, overall;
    for (int r = 0; r < rounds; ++r) {
        auto flows = make_flows(subscribers, n_flows);
        core::Accounting acc(clock);
        acc.set_index(index);
        acc.reserve_flows(n_flows);  // as the daemon does from nf_conntrack_max
        const auto t0 = Clock::now();
        acc.dump_begin(1);
        first.push_back(run_phase(acc, flows, core::SampleKind::Poll, 1, now));
        acc.dump_end(1, true);
        acc.dump_begin(2);
        const double p1 = run_phase(acc, flows, core::SampleKind::Poll, 2, now);
        acc.dump_end(2, true);
        acc.dump_begin(3);
        const double p2 = run_phase(acc, flows, core::SampleKind::Poll, 3, now);
        acc.dump_end(3, true);
        progress.push_back((p1 + p2) / 2);
        destroy.push_back(run_phase(acc, flows, core::SampleKind::Destroy, 4, now));
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        overall.push_back(static_cast<double>(4 * n_flows) / secs);

        auto batch = acc.take(false);
        std::uint64_t up = 0;
        for (const auto& p : batch.usage.periods) {
            up += p.usage.up.bytes;
        }
        const std::uint64_t expected = n_flows * 10 * 100;  // 1+2+3+4 steps of 100 bytes
        if (up != expected || acc.ledger().live_flows() != 0) {
            std::fprintf(stderr, "FAIL: credited %llu up bytes, expected %llu; %zu flows left\n",
                         static_cast<unsigned long long>(up),
                         static_cast<unsigned long long>(expected), acc.ledger().live_flows());
            return 1;
        }
        std::printf(
            "round %d: first-seen %.2fM/s  progress %.2fM/s  destroy %.2fM/s  overall %.2fM/s\n",
            r + 1, first.back() / 1e6, progress.back() / 1e6, destroy.back() / 1e6,
            overall.back() / 1e6);
    }
    std::printf(
        "median over %d rounds (%zu subscribers, %zu flows): first-seen %.2fM/s progress %.2fM/s "
        "destroy %.2fM/s overall %.2fM samples/s\n",
        rounds, subscribers, n_flows, median(first) / 1e6, median(progress) / 1e6,
        median(destroy) / 1e6, median(overall) / 1e6);
    return 0;
}
