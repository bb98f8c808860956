#include <doctest/doctest.h>

#include "db_fixture.hpp"
#include "store/subscriber_store.hpp"
#include "store/usage_store.hpp"

using namespace ctquota;
using namespace std::chrono_literals;
using ctquota::dbtest::ScratchDatabase;

TEST_CASE("usage_current: documented columns with stable names and types") {
    ScratchDatabase scratch;
    std::vector<std::string> columns;
    for (const auto& r :
         scratch.query("SELECT column_name || ' ' || data_type, "
                       "col_description('usage_current'::regclass, ordinal_position::int) "
                       "FROM information_schema.columns WHERE table_name = 'usage_current' "
                       "ORDER BY ordinal_position")) {
        columns.push_back(r[0].c_str());
        CHECK_MESSAGE(!r[1].is_null(), "column without a comment: " << r[0].c_str());
    }
    CHECK(columns ==
          std::vector<std::string>{"subscriber_id text", "cycle_start timestamp with time zone",
                                   "up_bytes bigint", "down_bytes bigint", "up_packets bigint",
                                   "down_packets bigint", "updated_at timestamp with time zone",
                                   "cycle_end timestamp with time zone", "plan text"});
    CHECK(scratch.scalar("SELECT count(*) FROM pg_views WHERE viewname = 'usage_current'") == 1);
    CHECK(scratch.scalar("SELECT length(obj_description('usage_current'::regclass, 'pg_class'))") >
          20);
}

TEST_CASE("usage_current: one row per subscriber with usage this month, summed over gateways") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::UsageStore gw1(scratch.db(), "gw-1");
    store::UsageStore gw2(scratch.db(), "gw-2");
    const auto now = dbtest::now_us();
    const auto alice = subscribers.add("alice", {}, now);
    const auto bob = subscribers.add("bob", {}, now);
    const auto carol = subscribers.add("carol", {}, now);  // only last month's usage
    subscribers.add("dave", {}, now);                      // no usage at all

    gw1.flush(dbtest::usage_batch({alice, bob}, dbtest::usage(10, 100, 1, 2)));
    gw2.flush(dbtest::usage_batch({alice}, dbtest::usage(20, 200, 3, 4)));
    core::FlushBatch last_month;
    const auto previous = core::month_start_utc(dbtest::current_month() - 1s);
    for (const auto id : {alice, carol}) {
        last_month.usage.periods.push_back(
            core::period_usage(id, core::Period{previous, core::next_month_start_utc(previous)},
                               dbtest::usage(1000, 1000, 1000, 1000)));
    }
    gw1.flush(last_month);

    const auto rows = scratch.query(
        "SELECT subscriber_id, up_bytes, down_bytes, up_packets, down_packets, "
        "extract(epoch FROM cycle_start)::bigint, updated_at IS NOT NULL "
        "FROM usage_current ORDER BY subscriber_id");
    REQUIRE(rows.size() == 2);
    CHECK(rows[0][0].as<std::string>() == "alice");
    CHECK(rows[0][1].as<std::int64_t>() == 30);
    CHECK(rows[0][2].as<std::int64_t>() == 300);
    CHECK(rows[0][3].as<std::int64_t>() == 4);
    CHECK(rows[0][4].as<std::int64_t>() == 6);
    CHECK(rows[0][5].as<std::int64_t>() == core::to_unix_seconds(dbtest::current_month()));
    CHECK(rows[0][6].as<bool>());
    CHECK(rows[1][0].as<std::string>() == "bob");
    CHECK(rows[1][2].as<std::int64_t>() == 100);

    // The C++ read path agrees with the view.
    const auto totals = subscribers.current_usage("alice", now);
    REQUIRE(totals.has_value());
    CHECK(totals->usage == dbtest::usage(30, 300, 4, 6));
    CHECK(totals->cycle_start == dbtest::current_month());
    const auto carol_now = subscribers.current_usage("carol", now);
    REQUIRE(carol_now.has_value());
    CHECK(carol_now->usage == core::Usage{});
    const auto carol_then = subscribers.current_usage("carol", previous + 24h);
    REQUIRE(carol_then.has_value());
    CHECK(carol_then->usage == dbtest::usage(1000, 1000, 1000, 1000));
    CHECK(carol_then->cycle_start == previous);
}

TEST_CASE("usage_current: a plan's own cycle (not the calendar month) is the current one") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::UsageStore gw(scratch.db(), "gw-1");
    const auto now = dbtest::now_us();
    const auto erin = subscribers.add("erin", {}, now);
    // A 30-day cycle that started 10 days ago, and the one before it.
    const core::Period current{now - 240h, now + 480h};
    const core::Period before{current.start - 720h, current.start};
    core::FlushBatch batch;
    batch.usage.periods.push_back(core::period_usage(erin, current, dbtest::usage(5, 50, 1, 2)));
    batch.usage.periods.push_back(core::period_usage(erin, before, dbtest::usage(7, 70, 1, 2)));
    gw.flush(batch);
    const auto rows = scratch.query(
        "SELECT down_bytes, floor(extract(epoch FROM cycle_start))::bigint, "
        "floor(extract(epoch FROM cycle_end))::bigint FROM usage_current "
        "WHERE subscriber_id = 'erin'");
    REQUIRE(rows.size() == 1);
    CHECK(rows[0][0].as<std::int64_t>() == 50);
    CHECK(rows[0][1].as<std::int64_t>() == core::to_unix_seconds(current.start));
    CHECK(rows[0][2].as<std::int64_t>() == core::to_unix_seconds(current.end));
    const auto totals = subscribers.current_usage("erin", now);
    REQUIRE(totals.has_value());
    CHECK(totals->usage == dbtest::usage(5, 50, 1, 2));
    CHECK(totals->cycle_start == current.start);
}
