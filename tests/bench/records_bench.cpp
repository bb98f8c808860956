// Flow record sinks, one at a time, as fast as they go (release build):
//
//   records_bench ipfix [records=1000000] [rounds=3]
//       IpfixExporter::write into a real UDP socket on the loopback, drained by
//       a receiver thread that counts datagrams and records: records/s the
//       exporter sustains (encoding + sendto), and encoding alone.
//   records_bench format [records=1000000]
//       The flow log's COPY lines alone (no database): ns per record.
//   records_bench flowlog URL [records=1000000] [rounds=3]
//       FlowLogSink::write in batches of 20k (COPY into the partitioned
//       flow_log of the database at URL, which it migrates): rows/s.
//
// Each checks that what arrived is what was sent, so a fast but lossy sink fails.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "sinks/flow_log_sink.hpp"
#include "sinks/ipfix_exporter.hpp"
#include "store/flow_log_store.hpp"
#include "store/migrations.hpp"

using namespace ctquota;
using Clock = std::chrono::steady_clock;

namespace {

// n IPv4 connections of 1000 subscribers, masqueraded, ended a second ago.
core::RecordBatch make_records(std::size_t n, std::size_t first = 0) {
    auto v = std::make_shared<std::vector<core::FlowRecord>>(n);
    const auto now = core::SystemClock{}.now().time_since_epoch().count();
    for (std::size_t i = 0; i < n; ++i) {
        auto& r = (*v)[i];
        const auto k = first + i;
        r.subscriber = static_cast<core::SubscriberId>(1 + k % 1000);
        r.direction = core::Direction::OrigIsUpload;
        r.orig = {core::IpAddress::v4(0x64400000u + static_cast<std::uint32_t>(k % 1000)),
                  core::IpAddress::v4(0xC6120002u), static_cast<std::uint16_t>(1024 + k % 60000),
                  53, 17};
        r.reply = {r.orig.dst, core::IpAddress::v4(0xC6120001u), 53,
                   static_cast<std::uint16_t>(1024 + (k * 7) % 60000), 17};
        r.orig_total = r.orig_delta = {184, 2};
        r.reply_total = r.reply_delta = {0, 0};
        r.start_ns = now - 3'000'000'000;
        r.end_ns = now - 1'000'000'000;
        r.flow_id = k;
    }
    return v;
}

double rate(std::size_t n, Clock::duration d) {
    return static_cast<double>(n) / std::chrono::duration<double>(d).count();
}

int run_ipfix(std::size_t n, int rounds) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    const int big = 64 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    std::atomic<std::uint64_t> datagrams{0}, bytes{0};
    std::atomic<bool> stop{false};
    std::thread receiver([&] {
        std::vector<char> buf(65536);
        timeval tv{0, 100000};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        while (!stop) {
            const auto got = ::recv(fd, buf.data(), buf.size(), 0);
            if (got > 0) {
                ++datagrams;
                bytes += static_cast<std::uint64_t>(got);
            }
        }
    });
    sinks::IpfixConfig config;
    config.collectors = {
        {"127.0.0.1:" + std::to_string(ntohs(a.sin_port)), "127.0.0.1", ntohs(a.sin_port)}};
    metrics::RecordMetrics m;
    core::SystemClock clock;
    sinks::IpfixExporter exporter(config, clock, m);
    std::vector<core::RecordBatch> batches;
    for (std::size_t i = 0; i < n; i += 2000) {
        batches.push_back(make_records(std::min<std::size_t>(2000, n - i), i));
    }
    std::vector<double> send_rates, encode_rates;
    for (int round = 0; round < rounds; ++round) {
        const auto before = datagrams.load();
        const auto messages_before = m.ipfix_messages.load();
        const double cpu0 = bench::cpu_ms();
        const auto t0 = Clock::now();
        for (const auto& b : batches) {
            exporter.write({b});  // what the sink's channel does per taken batch
        }
        const auto t1 = Clock::now();
        send_rates.push_back(rate(n, t1 - t0));
        const auto sent = m.ipfix_messages.load() - messages_before;
        while (datagrams.load() - before < sent && Clock::now() - t1 < std::chrono::seconds(5)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));  // drain, bounded
        }
        std::printf(
            "ipfix round %d: %.0f records/s sent (%.2f CPU-s per 1M records incl. the "
            "receiver), %llu messages, %llu received, send errors %llu\n",
            round + 1, send_rates.back(),
            (bench::cpu_ms() - cpu0) / 1e3 * 1e6 / static_cast<double>(n),
            static_cast<unsigned long long>(m.ipfix_messages.load()),
            static_cast<unsigned long long>(datagrams.load()),
            static_cast<unsigned long long>(m.ipfix_send_errors.load()));
        sinks::ipfix::Session session({});
        std::vector<const core::FlowRecord*> ptrs;
        for (const auto& b : batches) {
            for (const auto& r : *b) {
                ptrs.push_back(&r);
            }
        }
        const auto e0 = Clock::now();
        std::size_t encoded = 0;
        for (std::size_t i = 0; i < ptrs.size(); i += 2000) {
            encoded += session
                           .encode({ptrs.data() + i, std::min<std::size_t>(2000, ptrs.size() - i)},
                                   clock.now())
                           .size();
        }
        encode_rates.push_back(rate(n, Clock::now() - e0));
        (void)encoded;
    }
    stop = true;
    receiver.join();
    ::close(fd);
    const bool all = datagrams.load() == m.ipfix_messages.load() && m.ipfix_send_errors == 0;
    std::printf(
        "ipfix: median %.0f records/s exported, %.0f records/s encoded; every message "
        "arrived: %s (%llu of %llu)\n",
        bench::median(send_rates), bench::median(encode_rates), all ? "yes" : "NO",
        static_cast<unsigned long long>(datagrams.load()),
        static_cast<unsigned long long>(m.ipfix_messages.load()));
    return all ? 0 : 1;
}

// The flow log's COPY lines alone, no database: ns per record.
int run_format(std::size_t n) {
    const auto batch = make_records(n);
    std::string out;
    out.reserve(1 << 21);
    const auto t0 = Clock::now();
    std::size_t bytes = 0;
    for (const auto& r : *batch) {
        store::append_flow_log_line(out, "bench-gw", r);
        if (out.size() > (1 << 20)) {
            bytes += out.size();
            out.clear();
        }
    }
    bytes += out.size();
    const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    std::printf("format: %.0f ns per flow log line (%zu lines, %.0f bytes each)\n",
                ns / static_cast<double>(n), n,
                static_cast<double>(bytes) / static_cast<double>(n));
    return 0;
}

int run_flowlog(const std::string& url, std::size_t n, int rounds) {
    store::Database db(url);
    store::apply_migrations(db, CTQUOTA_SCHEMA_DIR);
    sinks::FlowLogConfig config;
    config.enabled = true;
    metrics::RecordMetrics m;
    core::SystemClock clock;
    sinks::FlowLogSink sink(config, url, "bench-gw", clock, m);
    std::vector<double> rates;
    std::size_t written = 0;
    for (int round = 0; round < rounds; ++round) {
        const auto t0 = Clock::now();
        for (std::size_t i = 0; i < n; i += 20000) {
            sink.write({make_records(std::min<std::size_t>(20000, n - i), written + i)});
        }
        rates.push_back(rate(n, Clock::now() - t0));
        written += n;
        std::printf("flowlog round %d: %.0f rows/s\n", round + 1, rates.back());
    }
    pqxx::work txn(db.connection());
    const auto rows = txn.exec1("SELECT count(*) FROM flow_log")[0].as<std::size_t>();
    std::printf("flowlog: median %.0f rows/s (COPY in batches of 20k); rows %zu of %zu\n",
                bench::median(rates), rows, written);
    return rows == written ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "ipfix") {
        return run_ipfix(argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1'000'000,
                         argc > 3 ? std::atoi(argv[3]) : 3);
    }
    if (mode == "format") {
        return run_format(argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1'000'000);
    }
    if (mode == "flowlog" && argc > 2) {
        return run_flowlog(argv[2], argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 1'000'000,
                           argc > 4 ? std::atoi(argv[4]) : 3);
    }
    std::fprintf(stderr,
                 "usage: records_bench ipfix [records] [rounds]\n"
                 "       records_bench flowlog URL [records] [rounds]\n");
    return 2;
}
