#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "db_fixture.hpp"
#include "store/subscriber_store.hpp"
#include "store/webhook_outbox.hpp"

using namespace ctquota;
using namespace std::chrono_literals;
using ctquota::dbtest::ScratchDatabase;

namespace {

const std::vector<std::string> kUrls = {"http://127.0.0.1:1/a", "https://b.example.net/hook"};
const std::string kGateway = "gw-1";

// An enforcement event of a fresh subscriber, as the policy engine records it.
std::int64_t add_event(ScratchDatabase& scratch, const std::string& subscriber) {
    const auto id = store::SubscriberStore(scratch.db()).add(subscriber, {}, dbtest::now_us());
    return scratch.scalar(
        "INSERT INTO enforcement_events (subscriber_id, kind, from_state, to_state, reason,"
        " counted_bytes, allowance_bytes) VALUES (" +
        std::to_string(id) +
        ", 'state', 'normal', 'blocked', '100% used: block tier', 1000, 1000) RETURNING id");
}

nlohmann::json payload_of(std::int64_t event_id, const std::string& subscriber) {
    store::WebhookEvent e;
    e.event_id = event_id;
    e.kind = "state";
    e.subscriber_id = subscriber;
    e.at = dbtest::now_us();
    e.from_state = "normal";
    e.to_state = "blocked";
    e.reason = "100% used: block tier";
    e.counted_bytes = 1000;
    e.allowance_bytes = 1000;
    return store::webhook_payload(e);
}

void enqueue(ScratchDatabase& scratch, const store::WebhookOutbox& outbox, int events) {
    for (int i = 0; i < events; ++i) {
        const auto sub = "wh-" + std::to_string(scratch.count("subscribers"));
        const auto event = add_event(scratch, sub);
        pqxx::work txn(scratch.db().connection());
        outbox.enqueue(txn, payload_of(event, sub));
        txn.commit();
    }
}

}  // namespace

TEST_CASE("webhook retry delays double from the first and stop at the cap") {
    const store::WebhookBackoff b{1000ms, 300'000ms};
    const std::pair<int, std::int64_t> rows[] = {
        {1, 1000},     {2, 2000},     {3, 4000},       {9, 256'000},
        {10, 300'000}, {11, 300'000}, {5000, 300'000},
    };
    for (const auto& [attempts, ms] : rows) {
        CAPTURE(attempts);
        CHECK(store::webhook_retry_delay(attempts, b).count() == ms);
    }
    CHECK(store::webhook_retry_delay(3, {5000ms, 3000ms}).count() == 3000);
}

TEST_CASE("webhook payload: every field, nulls for what is absent") {
    store::WebhookEvent e;
    e.event_id = 42;
    e.kind = "cycle";
    e.subscriber_id = "acme-1";
    e.at = core::TimePoint{std::chrono::seconds(1'700'000'000)};
    e.reason = "new cycle";
    const auto j = store::webhook_payload(e);
    CHECK(j == nlohmann::json{{"event_id", 42},
                              {"kind", "cycle"},
                              {"subscriber_id", "acme-1"},
                              {"at", "2023-11-14T22:13:20Z"},
                              {"from", nullptr},
                              {"to", nullptr},
                              {"reason", "new cycle"},
                              {"counted_bytes", nullptr},
                              {"allowance_bytes", nullptr}});
}

TEST_CASE("enqueue writes one row per URL in the caller's transaction") {
    ScratchDatabase scratch;
    const store::WebhookOutbox outbox(kGateway, kUrls);
    const auto event = add_event(scratch, "sub-a");
    {
        pqxx::work txn(scratch.db().connection());
        CHECK(outbox.enqueue(txn, payload_of(event, "sub-a")) == 2);
        // not committed: rolled back with the caller's transaction
    }
    CHECK(scratch.count("webhook_outbox") == 0);
    {
        pqxx::work txn(scratch.db().connection());
        outbox.enqueue(txn, payload_of(event, "sub-a"));
        txn.commit();
    }
    const auto rows = scratch.query(
        "SELECT url, event_id, payload->>'subscriber_id', attempts, delivered_at IS NULL"
        " FROM webhook_outbox ORDER BY id");
    REQUIRE(rows.size() == 2);
    CHECK(rows[0][0].as<std::string>() == kUrls[0]);
    CHECK(rows[1][0].as<std::string>() == kUrls[1]);
    CHECK(rows[0][1].as<std::int64_t>() == event);
    CHECK(rows[0][2].as<std::string>() == "sub-a");
    CHECK(rows[0][3].as<int>() == 0);
    CHECK(rows[0][4].as<bool>());

    pqxx::work txn(scratch.db().connection());
    CHECK_THROWS_AS(outbox.enqueue(txn, nlohmann::json::array()), std::invalid_argument);
    CHECK_THROWS_AS(outbox.enqueue(txn, {{"kind", 1}}), std::invalid_argument);
    CHECK(store::WebhookOutbox(kGateway, {}).enqueue(txn, payload_of(event, "sub-a")) == 0);
}

TEST_CASE("claim leases due rows; failures back off; delivered rows are done") {
    ScratchDatabase scratch;
    const store::WebhookOutbox outbox(kGateway, {"http://127.0.0.1:1/x"}, {100ms, 400ms});
    enqueue(scratch, outbox, 3);
    auto first = outbox.claim(scratch.db(), 2, 10s);
    REQUIRE(first.size() == 2);
    CHECK(first[0].id < first[1].id);
    CHECK(first[0].attempts == 1);
    CHECK(first[0].kind == "state");
    CHECK(nlohmann::json::parse(first[0].body)["to"] == "blocked");
    auto rest = outbox.claim(scratch.db(), 10, 10s);
    REQUIRE(rest.size() == 1);  // the leased two are not due
    CHECK(outbox.claim(scratch.db(), 10, 10s).empty());

    outbox.mark_delivered(scratch.db(), first[0].id);
    outbox.mark_failed(scratch.db(), first[1], "connection refused\n\x01");
    const auto failed = scratch.query(
        "SELECT attempts, last_error, extract(epoch from next_attempt_at - now())"
        " FROM webhook_outbox WHERE id = " +
        std::to_string(first[1].id));
    CHECK(failed[0][0].as<int>() == 1);
    CHECK(failed[0][1].as<std::string>() == "connection refused??");
    CHECK(failed[0][2].as<double>() == doctest::Approx(0.1).epsilon(0.5));

    std::this_thread::sleep_for(150ms);
    auto again = outbox.claim(scratch.db(), 10, 10s);
    REQUIRE(again.size() == 1);
    CHECK(again[0].id == first[1].id);
    CHECK(again[0].attempts == 2);
    outbox.mark_failed(scratch.db(), again[0], "HTTP 500");
    CHECK(scratch.scalar("SELECT (extract(epoch from next_attempt_at - now()) * 1000)::bigint"
                         " FROM webhook_outbox WHERE id = " +
                         std::to_string(again[0].id)) > 150);
    CHECK(outbox.claim(scratch.db(), 10, 10s).empty());
    CHECK(scratch.scalar("SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NOT NULL") ==
          1);
    CHECK(outbox.next_due(scratch.db()).has_value());
    // A delivered row is never marked failed afterwards (a late, duplicate outcome).
    outbox.mark_failed(scratch.db(), first[0], "late");
    CHECK(scratch.scalar("SELECT count(*) FROM webhook_outbox WHERE last_error = 'late'") == 0);
}

TEST_CASE("claim skips rows another sender holds, without waiting") {
    ScratchDatabase scratch;
    const store::WebhookOutbox outbox(kGateway, {"http://127.0.0.1:1/x"});
    enqueue(scratch, outbox, 4);
    pqxx::connection other(scratch.url());
    pqxx::work holding(other);
    const auto held =
        holding.exec("SELECT id FROM webhook_outbox ORDER BY id LIMIT 2 FOR UPDATE")[1][0]
            .as<std::int64_t>();
    const auto started = std::chrono::steady_clock::now();
    const auto got = outbox.claim(scratch.db(), 10, 10s);
    CHECK(std::chrono::steady_clock::now() - started < 2s);
    CHECK(got.size() == 2);
    for (const auto& d : got) {
        CHECK(d.id > held);
    }
    holding.abort();
    CHECK(outbox.claim(scratch.db(), 10, 10s).size() == 2);
}

TEST_CASE("two senders claiming at once share the backlog without overlap") {
    ScratchDatabase scratch;
    const store::WebhookOutbox outbox(kGateway, {"http://127.0.0.1:1/x", "http://127.0.0.1:2/y"});
    enqueue(scratch, outbox, 100);  // 200 rows
    std::vector<std::int64_t> claimed[2];
    std::vector<std::thread> workers;
    for (int w = 0; w < 2; ++w) {
        workers.emplace_back([&, w] {
            store::Database db(scratch.url());
            while (true) {
                const auto batch = outbox.claim(db, 7, 60s);
                if (batch.empty()) {
                    break;
                }
                for (const auto& d : batch) {
                    claimed[w].push_back(d.id);
                }
            }
        });
    }
    for (auto& t : workers) {
        t.join();
    }
    std::set<std::int64_t> all(claimed[0].begin(), claimed[0].end());
    all.insert(claimed[1].begin(), claimed[1].end());
    CHECK(claimed[0].size() + claimed[1].size() == 200);
    CHECK(all.size() == 200);  // nobody got a row twice
    CHECK(scratch.scalar("SELECT max(attempts) FROM webhook_outbox") == 1);
    MESSAGE("worker split: " << claimed[0].size() << " / " << claimed[1].size());
}

TEST_CASE("a gateway claims only its own rows, per configured receiver") {
    ScratchDatabase scratch;
    const store::WebhookOutbox mine(kGateway, kUrls);
    const store::WebhookOutbox other("gw-2", kUrls);
    enqueue(scratch, mine, 2);   // 4 rows: 2 per receiver
    enqueue(scratch, other, 3);  // 6 rows of another gateway, same receivers
    const auto event = add_event(scratch, "sub-x");
    // Written behind our back: our gateway, a URL that is not a receiver of ours;
    // and a row from before the ownership column.
    scratch.exec("INSERT INTO webhook_outbox (event_id, payload, url, gateway_id) VALUES (" +
                 std::to_string(event) +
                 ", '{\"kind\":\"state\"}', 'http://attacker.example/x', 'gw-1')");
    scratch.exec("INSERT INTO webhook_outbox (event_id, payload, url) VALUES (" +
                 std::to_string(event) + ", '{\"kind\":\"state\"}', '" + kUrls[0] + "')");
    const auto first = mine.claim(scratch.db(), 10, 10s, kUrls[0]);
    REQUIRE(first.size() == 2);
    for (const auto& d : first) {
        CHECK(d.url == kUrls[0]);
    }
    const auto rest = mine.claim(scratch.db(), 10, 10s);  // every receiver of ours
    REQUIRE(rest.size() == 2);
    CHECK(rest[0].url == kUrls[1]);
    CHECK(mine.claim(scratch.db(), 10, 10s).empty());
    CHECK(mine.claim(scratch.db(), 10, 10s, "http://attacker.example/x").empty());
    CHECK(other.claim(scratch.db(), 10, 10s).size() == 6);
    CHECK(scratch.scalar("SELECT count(*) FROM webhook_outbox WHERE attempts = 0") == 2);
}

TEST_CASE("wake-ups arrive when outbox rows are committed, not before") {
    ScratchDatabase scratch;
    const store::WebhookOutbox outbox(kGateway, {"http://127.0.0.1:1/x"});
    store::WebhookWakeups wakeups(scratch.url());
    CHECK_FALSE(wakeups.wait(50ms));  // connects and listens; nothing yet
    const auto event = add_event(scratch, "sub-w");
    pqxx::connection writer(scratch.url());
    pqxx::work txn(writer);
    outbox.enqueue(txn, payload_of(event, "sub-w"));
    CHECK_FALSE(wakeups.wait(100ms));
    txn.commit();
    CHECK(wakeups.wait(2000ms));
    CHECK_FALSE(wakeups.wait(50ms));
}
