// Quota slices in PostgreSQL (store/lease_store.hpp): gateways settling their
// leases concurrently, each on its own connection, are never granted more
// than what is left in total; an expired lease goes to the others.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "db_fixture.hpp"
#include "store/lease_store.hpp"
#include "store/sql_util.hpp"

using namespace ctquota;
using namespace std::chrono_literals;
using ctquota::dbtest::ScratchDatabase;

namespace {

constexpr std::uint64_t kLimit = 10 * 1024 * 1024;

core::SubscriberId add_subscriber(ScratchDatabase& scratch) {
    return scratch.query("INSERT INTO subscribers (external_id) VALUES ('s') RETURNING id")[0][0]
        .as<core::SubscriberId>();
}

void set_usage(ScratchDatabase& scratch, core::SubscriberId id, const std::string& gateway,
               std::uint64_t down) {
    scratch.exec(
        "INSERT INTO usage_period (subscriber_id, period_start, gateway_id, down_bytes) "
        "VALUES (" +
        std::to_string(id) + ", 'epoch'::timestamptz + " +
        std::to_string(store::to_micros(dbtest::current_month())) +
        " * interval '1 microsecond', '" + gateway + "', " + std::to_string(down) +
        ") ON CONFLICT (subscriber_id, period_start, gateway_id) DO UPDATE SET "
        "down_bytes = EXCLUDED.down_bytes");
}

store::LeaseAsk ask(core::SubscriberId id, std::optional<std::uint64_t> last_settle) {
    store::LeaseAsk a;
    a.id = id;
    a.cycle_start = dbtest::current_month();
    a.block_limit = kLimit;
    a.rate_bytes_per_second = 3 * 1024 * 1024;  // wants 3 s of it: more than half of the limit
    a.counted_at_last_settle = last_settle;
    a.counted_at_last_grant = last_settle;
    return a;
}

// What every gateway has taken or may still take, from the stored rows.
std::int64_t committed(ScratchDatabase& scratch, core::SubscriberId id) {
    return scratch.scalar(
        "SELECT coalesce(sum(greatest(u.up_bytes + u.down_bytes, coalesce(l.ceiling_bytes, 0))), "
        "0) FROM usage_period u LEFT JOIN quota_lease l ON l.subscriber_id = u.subscriber_id AND "
        "l.gateway_id = u.gateway_id AND l.expires_at > now() WHERE u.subscriber_id = " +
        std::to_string(id));
}

}  // namespace

TEST_CASE("gateways leasing concurrently are never granted more than what is left") {
    ScratchDatabase scratch;
    const auto id = add_subscriber(scratch);
    const std::vector<std::string> gateways{"gw-a", "gw-b", "gw-c"};
    for (const auto& g : gateways) {
        set_usage(scratch, id, g, 1000);
    }
    core::LeaseSettings settings;
    settings.min_slice_bytes = 64 * 1024;
    std::atomic<int> running{static_cast<int>(gateways.size())};
    std::vector<std::thread> threads;
    for (const auto& g : gateways) {
        threads.emplace_back([&, g] {
            store::Database db(scratch.url());
            store::LeaseStore leases(db);
            store::Database flush_db(scratch.url());
            std::uint64_t counted = 1000;
            std::uint64_t last = 0;
            for (int round = 0; round < 60; ++round) {
                const auto batch = leases.settle(g, {ask(id, last)}, settings, dbtest::now_us());
                const auto ceiling = batch.outcomes.at(0).decision.ceiling;
                last = counted;
                if (ceiling > counted) {  // it passes all it was granted, and its flush says so
                    counted = ceiling;
                    pqxx::work txn(flush_db.connection());
                    txn.exec_params(
                        "UPDATE usage_period SET down_bytes = $1 WHERE subscriber_id = $2 AND "
                        "gateway_id = $3",
                        static_cast<std::int64_t>(counted), id, g);
                    txn.commit();
                }
            }
            --running;
        });
    }
    // Meanwhile, the invariant holds whenever we look.
    int over = 0;
    int looks = 0;
    while (running > 0) {
        over += committed(scratch, id) > static_cast<std::int64_t>(kLimit) ? 1 : 0;
        ++looks;
    }
    for (auto& t : threads) {
        t.join();
    }
    MESSAGE(looks << " looks at the leases while three gateways settled");
    CHECK(over == 0);
    const auto used = scratch.scalar(
        "SELECT sum(down_bytes) FROM usage_period WHERE subscriber_id = " + std::to_string(id));
    CHECK(used == static_cast<std::int64_t>(kLimit));  // all of it, not one byte more
    CHECK(committed(scratch, id) <= static_cast<std::int64_t>(kLimit));
}

TEST_CASE("a lease not renewed expires and its bytes go to another gateway") {
    ScratchDatabase scratch;
    const auto id = add_subscriber(scratch);
    set_usage(scratch, id, "gw-a", 1000);
    set_usage(scratch, id, "gw-b", 1000);
    core::LeaseSettings settings;
    settings.ttl = 1s;
    store::LeaseStore leases(scratch.db());
    auto a = ask(id, 0);
    a.rate_bytes_per_second = 100 * kLimit;  // asks for all that is left
    const auto first = leases.settle("gw-a", {a}, settings, dbtest::now_us());
    CHECK(first.outcomes.at(0).decision.action == core::LeaseAction::Grant);
    CHECK(first.outcomes.at(0).decision.ceiling == kLimit - 1000);
    auto b = a;
    const auto refused = leases.settle("gw-b", {b}, settings, dbtest::now_us());
    CHECK(refused.outcomes.at(0).decision.action == core::LeaseAction::Denied);
    CHECK(refused.outcomes.at(0).decision.ceiling == 1000);
    // gw-a dies: nobody renews. Poll until gw-b gets the rest.
    store::LeaseBatch later;
    for (int i = 0; i < 100; ++i) {
        later = leases.settle("gw-b", {b}, settings, dbtest::now_us());
        if (later.outcomes.at(0).decision.action == core::LeaseAction::Grant) {
            break;
        }
        std::this_thread::sleep_for(50ms);
    }
    CHECK(later.outcomes.at(0).decision.action == core::LeaseAction::Grant);
    CHECK(later.outcomes.at(0).decision.ceiling == kLimit - 1000);
    CHECK(later.expired == 1);
    CHECK(scratch.scalar("SELECT count(*) FROM quota_lease") == 1);
}

TEST_CASE("an idle gateway asks for nothing, a lease of a past cycle is gone") {
    ScratchDatabase scratch;
    const auto id = add_subscriber(scratch);
    set_usage(scratch, id, "gw-a", 5000);
    store::LeaseStore leases(scratch.db());
    const core::LeaseSettings settings;
    auto idle = ask(id, 5000);  // no growth since it last looked
    auto out = leases.settle("gw-a", {idle}, settings, dbtest::now_us());
    CHECK(out.outcomes.at(0).decision.action == core::LeaseAction::Idle);
    CHECK(out.outcomes.at(0).own_counted == 5000);
    CHECK(scratch.count("quota_lease") == 0);
    scratch.exec("INSERT INTO quota_lease VALUES (" + std::to_string(id) +
                 ", 'gw-b', now() - interval '40 days', 100, now(), now() + interval '1 hour')");
    out = leases.settle("gw-a", {ask(id, 0)}, settings, dbtest::now_us());
    CHECK(out.expired == 1);
    CHECK(out.outcomes.at(0).decision.action == core::LeaseAction::Grant);
}
