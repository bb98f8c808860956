#include <doctest/doctest.h>

#include "db_fixture.hpp"
#include "store/subscriber_store.hpp"
#include "store/usage_store.hpp"

using namespace ctquota;
using namespace std::chrono_literals;
using ctquota::dbtest::ScratchDatabase;

namespace {

// Every row the flush may touch, as text, to compare whole database states.
std::string usage_state(ScratchDatabase& s) {
    std::string out;
    for (const char* sql :
         {"SELECT subscriber_id, period_start, gateway_id, up_bytes, down_bytes, up_packets, "
          "down_packets FROM usage_period ORDER BY 1, 2, 3",
          "SELECT subscriber_id, hour, gateway_id, up_bytes, down_bytes, up_packets, down_packets "
          "FROM usage_hourly ORDER BY 1, 2, 3",
          "SELECT gateway_id, hour, up_bytes, down_bytes, up_packets, down_packets FROM "
          "usage_unattributed ORDER BY 1, 2",
          "SELECT gateway_id, is_snapshot, length(data) FROM ledger_checkpoint ORDER BY seq",
          "SELECT gateway_id FROM gateway_flush ORDER BY 1"}) {
        for (const auto& row : s.query(sql)) {
            for (const auto& field : row) {
                out += field.is_null() ? "NULL" : field.c_str();
                out += '|';
            }
            out += '\n';
        }
        out += "--\n";
    }
    return out;
}

std::vector<core::SubscriberId> add_subscribers(store::SubscriberStore& store, int n) {
    std::vector<core::SubscriberId> ids;
    for (int i = 0; i < n; ++i) {
        ids.push_back(store.add("sub-" + std::to_string(i), {}, dbtest::now_us()));
    }
    return ids;
}

// A batch with every part filled: periods, hours (two hours), unattributed, checkpoint.
core::FlushBatch full_batch(const std::vector<core::SubscriberId>& ids, std::uint64_t scale) {
    auto b = dbtest::usage_batch(ids, dbtest::usage(100 * scale, 1000 * scale, scale, 2 * scale));
    const auto hour = core::hour_start(core::SystemClock{}.now());
    const core::Period month{core::month_start_utc(hour - 1h),
                             core::next_month_start_utc(hour - 1h)};
    b.usage.hours.push_back(core::hour_usage(ids[0], hour - 1h, month, dbtest::usage(7, 8, 1, 1)));
    b.usage.unattributed.push_back(
        core::hour_usage(core::kUnattributed, hour, {}, dbtest::usage(5, 6, 1, 2)));
    b.checkpoint.upserts.push_back(dbtest::flow_entry(1, 100, 1000));
    return b;
}

}  // namespace

TEST_CASE("flush writes every part and adds to existing totals") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::UsageStore usage(scratch.db(), "gw-1");
    const auto ids = add_subscribers(subscribers, 3);

    auto batch = full_batch(ids, 1);
    // The same key twice in one batch is summed, not refused by ON CONFLICT.
    batch.usage.periods.push_back(batch.usage.periods[0]);
    usage.flush(batch);
    usage.flush(full_batch(ids, 10));

    CHECK(scratch.count("usage_period") == 3);
    CHECK(scratch.scalar("SELECT up_bytes FROM usage_period WHERE subscriber_id = " +
                         std::to_string(ids[0])) == 100 + 100 + 1000);
    CHECK(scratch.scalar("SELECT down_packets FROM usage_period WHERE subscriber_id = " +
                         std::to_string(ids[2])) == 2 + 20);
    CHECK(scratch.scalar("SELECT count(*) FROM usage_period WHERE gateway_id = 'gw-1' AND "
                         "period_start = date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME "
                         "ZONE 'UTC'") == 3);
    CHECK(scratch.count("usage_hourly") == 4);
    CHECK(scratch.scalar("SELECT down_bytes FROM usage_hourly WHERE hour < date_trunc('hour', "
                         "now())") == 16);
    CHECK(scratch.scalar("SELECT sum(up_bytes + down_bytes) FROM usage_hourly WHERE hour = "
                         "date_trunc('hour', now())") == 3 * 11 * 1100);
    CHECK(scratch.count("usage_unattributed") == 1);
    CHECK(scratch.scalar("SELECT up_bytes * 1000 + down_packets FROM usage_unattributed WHERE "
                         "gateway_id = 'gw-1'") == 10 * 1000 + 4);
    CHECK(scratch.count("ledger_checkpoint") == 2);
    CHECK(scratch.count("gateway_flush") == 1);

    const auto totals = subscribers.current_usage("sub-0", dbtest::now_us());
    REQUIRE(totals.has_value());
    CHECK(totals->usage == dbtest::usage(1200, 12000, 12, 24));
    REQUIRE(totals->updated_at.has_value());
    CHECK(*totals->updated_at <= dbtest::now_us());
    CHECK(*totals->updated_at > dbtest::now_us() - 1min);
}

TEST_CASE("flush is all or nothing: a failure at the checkpoint leaves no usage behind") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::UsageStore usage(scratch.db(), "gw-1");
    const auto ids = add_subscribers(subscribers, 3);
    usage.flush(full_batch(ids, 1));
    const auto before = usage_state(scratch);
    const auto bytes_before = usage.checkpoint_bytes_since_snapshot();
    CHECK(bytes_before > 0);

    // The last statement of the transaction fails, after all usage rows went in.
    scratch.exec(
        "CREATE FUNCTION fail_checkpoint() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'checkpoint refused by test'; END $$;"
        "CREATE TRIGGER fail_checkpoint BEFORE INSERT ON ledger_checkpoint "
        "FOR EACH ROW EXECUTE FUNCTION fail_checkpoint()");
    try {
        usage.flush(full_batch(ids, 10));
        FAIL("flush should have failed");
    } catch (const store::DatabaseError& e) {
        CHECK(std::string(e.what()).starts_with("flush: "));
        CHECK(std::string(e.what()).find("checkpoint refused by test") != std::string::npos);
    }
    CHECK(usage_state(scratch) == before);
    CHECK(usage.checkpoint_bytes_since_snapshot() == bytes_before);

    // Retried once the cause is gone: written exactly once.
    scratch.exec("DROP TRIGGER fail_checkpoint ON ledger_checkpoint");
    usage.flush(full_batch(ids, 10));
    CHECK(scratch.scalar("SELECT sum(up_bytes) FROM usage_period") == 3 * 1100);
    CHECK(scratch.scalar("SELECT sum(up_bytes) FROM usage_unattributed") == 10);
    CHECK(scratch.count("ledger_checkpoint") == 2);
    CHECK(usage.checkpoint_bytes_since_snapshot() > bytes_before);
}

TEST_CASE("flush is all or nothing: a row failing mid-way in the hourly upsert") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::UsageStore usage(scratch.db(), "gw-1");
    const auto ids = add_subscribers(subscribers, 5);
    // Fails on the 4th hourly row inserted, whichever subscriber that is.
    scratch.exec(
        "CREATE SEQUENCE hourly_rows;"
        "CREATE FUNCTION fail_4th() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF nextval('hourly_rows') = 4 THEN RAISE EXCEPTION 'fourth row'; END IF; "
        "RETURN NEW; END $$;"
        "CREATE TRIGGER fail_4th BEFORE INSERT ON usage_hourly FOR EACH ROW "
        "EXECUTE FUNCTION fail_4th()");
    CHECK_THROWS_AS(usage.flush(full_batch(ids, 1)), store::DatabaseError);
    CHECK(scratch.scalar("SELECT last_value FROM hourly_rows") == 4);  // it really ran
    CHECK(scratch.count("usage_period") == 0);
    CHECK(scratch.count("usage_hourly") == 0);
    CHECK(scratch.count("ledger_checkpoint") == 0);
    CHECK(scratch.count("gateway_flush") == 0);

    usage.flush(full_batch(ids, 1));  // the sequence is past 4 now
    CHECK(scratch.count("usage_period") == 5);
    CHECK(scratch.count("usage_hourly") == 6);
    CHECK(scratch.scalar("SELECT sum(up_bytes) FROM usage_period") == 5 * 100);
}

TEST_CASE("flush: a subscriber id the database does not know fails the whole batch") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::UsageStore usage(scratch.db(), "gw-1");
    auto ids = add_subscribers(subscribers, 2);
    ids.push_back(ids.back() + 1000);
    CHECK_THROWS_WITH_AS(usage.flush(full_batch(ids, 1)), doctest::Contains("foreign key"),
                         store::DatabaseError);
    CHECK(scratch.count("usage_period") + scratch.count("usage_hourly") +
              scratch.count("ledger_checkpoint") ==
          0);
}

TEST_CASE("flush: the connection dying during COMMIT is resolved, not guessed") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::UsageStore usage(scratch.db(), "gw-1");
    const auto ids = add_subscribers(subscribers, 2);
    usage.flush(full_batch(ids, 1));
    // A deferred trigger runs inside COMMIT: the backend kills itself there, so
    // the client loses the connection with its COMMIT unanswered.
    scratch.exec(
        "CREATE FUNCTION die_in_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(1); "
        "RETURN NULL; END $$;"
        "CREATE CONSTRAINT TRIGGER die_in_commit AFTER UPDATE ON gateway_flush "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION die_in_commit()");
    try {
        usage.flush(full_batch(ids, 10));
        FAIL("flush should have failed");
    } catch (const store::DatabaseError& e) {
        CHECK(std::string(e.what()).find("did not commit") != std::string::npos);
    }
    CHECK(scratch.scalar("SELECT sum(up_bytes) FROM usage_period") == 2 * 100);
    scratch.exec("DROP TRIGGER die_in_commit ON gateway_flush");
    usage.flush(full_batch(ids, 10));
    CHECK(scratch.scalar("SELECT sum(up_bytes) FROM usage_period") == 2 * 1100);
}

TEST_CASE("flush stores its journal position with the totals; a flush without a journal keeps it") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    const auto ids = add_subscribers(subscribers, 1);
    store::UsageStore plain(scratch.db(), "gw-1");
    plain.flush(full_batch(ids, 1));
    const auto first = plain.load_stored_flush();
    CHECK_FALSE(first.journal.has_value());  // no journal yet
    CHECK(first.token == plain.last_token());
    CHECK(first.token != 0);

    store::UsageStore journaled(scratch.db(), "gw-1");
    const std::uint64_t id = 0xfedcba9876543210ull;  // above INT64_MAX: stored as its bit pattern
    journaled.set_journal(id);
    auto batch = full_batch(ids, 1);
    batch.journal_position = 123456;
    journaled.flush(batch);
    auto mark = journaled.load_stored_flush().journal;
    REQUIRE(mark.has_value());
    CHECK(mark->journal_id == id);
    CHECK(mark->position == 123456);

    // The same gateway run without its journal (turned off for a while): the
    // position of the journal's last counted event must survive.
    plain.flush(full_batch(ids, 1));
    const auto stored = plain.load_stored_flush();
    CHECK(stored.token == plain.last_token());
    CHECK(stored.token != first.token);
    mark = stored.journal;
    REQUIRE(mark.has_value());
    CHECK(mark->journal_id == id);
    CHECK(mark->position == 123456);
    // Another gateway's row is its own.
    CHECK(store::UsageStore(scratch.db(), "gw-2").load_stored_flush().token == 0);
}
