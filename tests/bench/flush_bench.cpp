// Flush benchmark: one transaction carrying N changed subscribers (their
// period totals and hourly rows, plus a checkpoint row), against a real
// PostgreSQL. Target: 100k subscribers < 1 s.
//
//   flush_bench URL [subscribers=100000] [rounds=5] [gateways=1]
//
// With a gateway count (issue 13, scaling out): that many simulated gateways,
// each with its own connection, gateway id and `subscribers` subscribers of
// its own, flush all of them at once, `rounds` times; reported: the median
// flush time and the rows the database took per second, all gateways together.
//
// URL must point at an empty, migrated-or-not database it may fill.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "core/calendar.hpp"
#include "store/migrations.hpp"
#include "store/usage_store.hpp"

using namespace ctquota;

namespace {

std::vector<core::SubscriberId> make_subscribers(store::Database& db, const std::string& prefix,
                                                 long n) {
    pqxx::work txn(db.connection());
    txn.exec_params(
        "INSERT INTO subscribers (external_id) SELECT $2 || g FROM generate_series(1, $1) g "
        "ON CONFLICT DO NOTHING",
        n, prefix);
    std::vector<core::SubscriberId> ids;
    for (const auto& r :
         txn.exec_params("SELECT id FROM subscribers WHERE starts_with(external_id, $1)", prefix)) {
        ids.push_back(r[0].as<core::SubscriberId>());
    }
    txn.commit();
    return ids;
}

// Every subscriber's period row and hourly row, as a flush in `hour` takes them.
core::FlushBatch batch_of(const std::vector<core::SubscriberId>& ids, core::TimePoint now,
                          core::TimePoint hour, int round) {
    core::FlushBatch batch;
    const core::Period month{core::month_start_utc(now), core::next_month_start_utc(now)};
    for (auto id : ids) {
        const core::Usage u{{1000u + static_cast<std::uint64_t>(round), 10}, {50000, 40}};
        batch.usage.periods.push_back(core::period_usage(id, month, u));
        batch.usage.hours.push_back(core::hour_usage(id, hour, month, u));
    }
    batch.checkpoint.upserts.push_back({});
    return batch;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// `gateways` flushers at once, each `rounds` steady flushes of its own subscribers.
int run_gateways(const char* url, long n, int rounds, int gateways) {
    std::vector<std::vector<core::SubscriberId>> ids(static_cast<std::size_t>(gateways));
    {
        store::Database db(url);
        store::apply_migrations(db, CTQUOTA_SCHEMA_DIR);
        for (int g = 0; g < gateways; ++g) {
            ids[static_cast<std::size_t>(g)] =
                make_subscribers(db, "gw" + std::to_string(g) + "-", n);
        }
    }
    const auto now = core::SystemClock{}.now();
    const auto hour = core::hour_start(now);
    std::vector<std::vector<double>> times(static_cast<std::size_t>(gateways));
    auto flusher = [&](int g) {
        const auto& mine = ids[static_cast<std::size_t>(g)];
        store::Database db(url);
        store::UsageStore usage(db, "bench-gw-" + std::to_string(g));
        usage.flush(batch_of(mine, now, hour, 0));  // the first flush inserts: not timed
        for (int round = 1; round <= rounds; ++round) {
            const auto batch = batch_of(mine, now, hour, round);
            const auto t0 = std::chrono::steady_clock::now();
            usage.flush(batch);
            times[static_cast<std::size_t>(g)].push_back(seconds_since(t0));
        }
    };
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int g = 0; g < gateways; ++g) {
        threads.emplace_back(flusher, g);
    }
    for (auto& t : threads) {
        t.join();
    }
    const double wall = seconds_since(t0);
    std::vector<double> all;
    for (const auto& t : times) {
        all.insert(all.end(), t.begin(), t.end());
    }
    // Two rows a subscriber a flush (period + hour); the untimed first flush included.
    const double rows = 2.0 * static_cast<double>(n) * gateways * (rounds + 1);
    std::printf(
        "%d gateways x %ld subscribers, %d flushes each: median flush %.3f s (max %.3f s), "
        "%.0f rows/s into the database over %.1f s\n",
        gateways, n, rounds, median(all), *std::max_element(all.begin(), all.end()), rows / wall,
        wall);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: flush_bench URL [subscribers] [rounds]\n");
        return 2;
    }
    const long n = argc > 2 ? std::atol(argv[2]) : 100000;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
    if (argc > 4) {
        return run_gateways(argv[1], n, rounds, std::max(1, std::atoi(argv[4])));
    }
    store::Database db(argv[1]);
    store::apply_migrations(db, CTQUOTA_SCHEMA_DIR);
    const auto ids = make_subscribers(db, "bench-", n);
    store::UsageStore usage(db, "bench-gw");
    const auto now = core::SystemClock{}.now();
    // Steady state: the same hour again (every row an update). Top of the hour:
    // a new hourly row per subscriber (inserts) while the period rows update.
    auto run = [&](const char* name, bool new_hour_each_round, int round_count) {
        std::vector<double> times;
        for (int round = 0; round < round_count; ++round) {
            const auto hour =
                core::hour_start(now) + std::chrono::hours(new_hour_each_round ? round + 1 : 0);
            const auto batch = batch_of(ids, now, hour, round);
            const auto t0 = std::chrono::steady_clock::now();
            usage.flush(batch);
            times.push_back(seconds_since(t0));
            std::printf("%s round %d: %zu subscribers flushed in %.3f s\n", name, round + 1,
                        ids.size(), times.back());
        }
        return median(times);
    };
    const double first = run("first (all inserts)", false, 1);
    const double steady = run("steady (same hour)", false, rounds);
    const double top = run("top of the hour", true, rounds);
    std::printf(
        "flush of %zu changed subscribers: median steady %.3f s, top of the hour %.3f s "
        "(first-ever %.3f s) over %d rounds\n",
        ids.size(), steady, top, first, rounds);
    return 0;
}
