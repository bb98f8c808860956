// Flush benchmark: one transaction carrying N changed subscribers (their
// period totals and hourly rows, plus a checkpoint row), against a real
// PostgreSQL. Target: 100k subscribers < 1 s.
//
//   flush_bench URL [subscribers=100000] [rounds=5]
//
// URL must point at an empty, migrated-or-not database it may fill.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <vector>

#include "core/calendar.hpp"
#include "store/migrations.hpp"
#include "store/usage_store.hpp"

using namespace ctquota;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: flush_bench URL [subscribers] [rounds]\n");
        return 2;
    }
    const long n = argc > 2 ? std::atol(argv[2]) : 100000;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
    store::Database db(argv[1]);
    store::apply_migrations(db, CTQUOTA_SCHEMA_DIR);
    {
        pqxx::work txn(db.connection());
        txn.exec_params(
            "INSERT INTO subscribers (external_id) SELECT 'bench-' || g FROM generate_series(1, "
            "$1) g "
            "ON CONFLICT DO NOTHING",
            n);
        txn.commit();
    }
    std::vector<core::SubscriberId> ids;
    {
        pqxx::work txn(db.connection());
        for (const auto& r :
             txn.exec("SELECT id FROM subscribers WHERE external_id LIKE 'bench-%'")) {
            ids.push_back(r[0].as<core::SubscriberId>());
        }
    }
    store::UsageStore usage(db, "bench-gw");
    const auto now = core::SystemClock{}.now();
    // Steady state: the same hour again (every row an update). Top of the hour:
    // a new hourly row per subscriber (inserts) while the period rows update.
    auto run = [&](const char* name, bool new_hour_each_round, int round_count) {
        std::vector<double> times;
        for (int round = 0; round < round_count; ++round) {
            const auto hour =
                core::hour_start(now) + std::chrono::hours(new_hour_each_round ? round + 1 : 0);
            core::FlushBatch batch;
            for (auto id : ids) {
                const core::Usage u{{1000u + static_cast<std::uint64_t>(round), 10}, {50000, 40}};
                const core::Period month{core::month_start_utc(now),
                                         core::next_month_start_utc(now)};
                batch.usage.periods.push_back(core::period_usage(id, month, u));
                batch.usage.hours.push_back(core::hour_usage(id, hour, month, u));
            }
            batch.checkpoint.upserts.push_back({});
            const auto t0 = std::chrono::steady_clock::now();
            usage.flush(batch);
            times.push_back(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            std::printf("%s round %d: %zu subscribers flushed in %.3f s\n", name, round + 1,
                        ids.size(), times.back());
        }
        std::sort(times.begin(), times.end());
        return times[times.size() / 2];
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
