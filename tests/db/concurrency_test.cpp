#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <thread>

#include "db_fixture.hpp"
#include "store/subscriber_store.hpp"
#include "store/usage_store.hpp"

using namespace ctquota;
using ctquota::dbtest::ScratchDatabase;

TEST_CASE("concurrent flush and read: readers only ever see whole flushes") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    std::vector<core::SubscriberId> ids;
    for (int i = 0; i < 20; ++i) {
        ids.push_back(subscribers.add("sub-" + std::to_string(i), {}, dbtest::now_us()));
    }
    // Flush k credits k bytes each way to every subscriber, so after any whole
    // number n of flushes every row reads up = down = n(n+1)/2, the same for all.
    constexpr int kFlushes = 150;
    std::set<std::int64_t> whole;
    for (std::int64_t n = 0, sum = 0; n <= kFlushes; ++n, sum += n) {
        whole.insert(sum);
    }
    std::atomic<bool> done{false};
    std::string writer_error;
    std::thread writer([&] {
        try {
            store::Database db(scratch.url());
            store::UsageStore usage(db, "gw-1");
            for (std::uint64_t k = 1; k <= kFlushes; ++k) {
                auto batch = dbtest::usage_batch(ids, dbtest::usage(k, k, 1, 1));
                batch.checkpoint.upserts.push_back(dbtest::flow_entry(1, k, k));
                usage.flush(batch);
            }
        } catch (const std::exception& e) {
            writer_error = e.what();
        }
        done = true;
    });

    pqxx::connection reader(scratch.url());
    int reads = 0, torn = 0, partial_reads = 0;
    std::string first_problem;
    while (!done || reads == 0) {
        pqxx::work tx(reader);
        const auto rows =
            tx.exec("SELECT subscriber_id, up_bytes, down_bytes, up_packets FROM usage_current");
        tx.commit();
        ++reads;
        if (rows.empty()) {
            continue;
        }
        partial_reads += rows.size() == ids.size() ? 0 : 1;
        const auto first = rows[0][1].as<std::int64_t>();
        for (const auto& r : rows) {
            const auto up = r[1].as<std::int64_t>();
            if (up != r[2].as<std::int64_t>() || up != first || !whole.contains(up)) {
                ++torn;
                if (first_problem.empty()) {
                    first_problem = std::string(r[0].c_str()) + " up " + r[1].c_str() + " down " +
                                    r[2].c_str() + " first " + std::to_string(first);
                }
            }
        }
    }
    writer.join();
    REQUIRE(writer_error == "");
    MESSAGE(reads << " reads during " << kFlushes << " flushes");
    CHECK(reads > 1);
    CHECK_MESSAGE(torn == 0, first_problem);
    CHECK(partial_reads == 0);  // all subscribers appear in the same flush
    const auto total = static_cast<std::int64_t>(kFlushes) * (kFlushes + 1) / 2;
    CHECK(scratch.scalar("SELECT min(up_bytes) FROM usage_current") == total);
    CHECK(scratch.scalar("SELECT max(down_bytes) FROM usage_current") == total);
    CHECK(scratch.scalar("SELECT sum(up_packets) FROM usage_current") == 20 * kFlushes);
    CHECK(scratch.count("ledger_checkpoint") == kFlushes);
}

TEST_CASE("two gateways flushing the same subscribers at once add up") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    std::vector<core::SubscriberId> ids;
    for (int i = 0; i < 10; ++i) {
        ids.push_back(subscribers.add("sub-" + std::to_string(i), {}, dbtest::now_us()));
    }
    constexpr int kFlushes = 60;
    std::vector<std::string> errors(2);
    std::vector<std::thread> gateways;
    for (int g = 0; g < 2; ++g) {
        gateways.emplace_back([&, g] {
            try {
                store::Database db(scratch.url());
                store::UsageStore usage(db, "gw-" + std::to_string(g));
                for (int k = 0; k < kFlushes; ++k) {
                    auto batch = dbtest::usage_batch(ids, dbtest::usage(1, 2, 3, 4));
                    core::HourUsage stray;
                    stray.subscriber = core::kUnattributed;
                    stray.hour = batch.usage.hours[0].hour;
                    stray.usage = dbtest::usage(5, 5, 1, 1);
                    batch.usage.unattributed.push_back(stray);
                    usage.flush(batch);
                }
            } catch (const std::exception& e) {
                errors[g] = e.what();
            }
        });
    }
    for (auto& t : gateways) {
        t.join();
    }
    CHECK(errors[0] == "");
    CHECK(errors[1] == "");
    CHECK(scratch.count("usage_period") == 20);
    CHECK(scratch.scalar("SELECT count(DISTINCT (up_bytes, down_bytes, up_packets, down_packets)) "
                         "FROM usage_current") == 1);
    CHECK(scratch.scalar("SELECT max(down_packets) FROM usage_current") == 2 * kFlushes * 4);
    CHECK(scratch.scalar("SELECT sum(up_bytes) FROM usage_unattributed") == 2 * kFlushes * 5);
    CHECK(scratch.count("gateway_flush") == 2);
}
