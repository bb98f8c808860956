// The policy tables behind plans, quotas, top-ups, states and events
// (schema/006_policies.sql): plan sources, overrides per cycle, idempotent
// top-ups under concurrent retries, event pages, and the NOTIFY wake-ups.
#include <doctest/doctest.h>

#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <thread>
#include <vector>

#include "core/plan.hpp"
#include "db_fixture.hpp"
#include "store/event_store.hpp"
#include "store/plan_store.hpp"
#include "store/quota_store.hpp"
#include "store/state_store.hpp"
#include "store/subscriber_queries.hpp"
#include "store/subscriber_store.hpp"

using namespace ctquota;
using namespace std::chrono_literals;
using ctquota::dbtest::ScratchDatabase;

namespace {

const std::string kPlanJson = R"({"name":"home","quota_bytes":1000})";

std::string hash_of(char c) {
    return std::string(64, c);
}

store::NewTopUp topup(std::uint64_t bytes, std::optional<std::string> key, char hash = 'a') {
    const auto now = dbtest::now_us();
    return store::NewTopUp{bytes, now, now + 24h, std::move(key),
                           key ? hash_of(hash) : std::string()};
}

class Collector : public pqxx::notification_receiver {
  public:
    explicit Collector(pqxx::connection_base& c)
        : pqxx::notification_receiver(c, "ctquota_policy") {}
    void operator()(const std::string& payload, int) override { payloads.push_back(payload); }
    std::vector<std::string> payloads;
};

}  // namespace

TEST_CASE("plans: api plans are created and replaced, file plans refuse the api") {
    ScratchDatabase scratch;
    store::PlanStore plans(scratch.db());
    using Upsert = store::PlanStore::Upsert;
    CHECK(plans.upsert("home", kPlanJson, store::PlanSource::Api) == Upsert::Created);
    CHECK(plans.upsert("home", R"({"quota_bytes":2000})", store::PlanSource::Api) ==
          Upsert::Updated);
    CHECK(plans.get("home")->definition == R"({"quota_bytes": 2000})");
    CHECK(plans.get("home")->source == store::PlanSource::Api);
    CHECK_FALSE(plans.get("nosuch").has_value());

    plans.upsert_files({{"prepaid",
                         "{}",
                         store::PlanSource::File,
                         std::string("/etc/ctquota/policies/prepaid.toml"),
                         {}}});
    const auto file_plan = plans.get("prepaid");
    REQUIRE(file_plan.has_value());
    CHECK(file_plan->source == store::PlanSource::File);
    CHECK(file_plan->source_file == "/etc/ctquota/policies/prepaid.toml");
    try {
        plans.upsert("prepaid", kPlanJson, store::PlanSource::Api);
        FAIL("a file plan was changed through the api");
    } catch (const store::PlanFromFileError& e) {
        CHECK(e.file() == "/etc/ctquota/policies/prepaid.toml");
        CHECK(std::string(e.what()).find("prepaid.toml") != std::string::npos);
    }
    CHECK(plans.get("prepaid")->definition == "{}");
    // The files win over an api plan of the same name.
    plans.upsert("home", kPlanJson, store::PlanSource::File, std::string("home.toml"));
    CHECK(plans.get("home")->source == store::PlanSource::File);
    CHECK(plans.list().size() == 2);

    CHECK_THROWS_AS(plans.upsert("Bad Name", "{}", store::PlanSource::Api), std::invalid_argument);
    CHECK_THROWS_AS(plans.upsert("ok", "[1]", store::PlanSource::Api), std::invalid_argument);
    CHECK_THROWS_AS(plans.upsert("ok", "{nope", store::PlanSource::Api), std::invalid_argument);
    CHECK(scratch.count("plans") == 2);
}

TEST_CASE("plans: assigning one to a subscriber, filters on plan and state") {
    ScratchDatabase scratch;
    store::PlanStore plans(scratch.db());
    store::SubscriberStore subscribers(scratch.db());
    plans.upsert("home", kPlanJson, store::PlanSource::Api);
    const auto now = dbtest::now_us();
    const auto alice = subscribers.add("alice", {}, now - 1h);
    subscribers.add("bob", {}, now - 1h);
    CHECK(plans.assign("alice", std::string("home")));
    CHECK_FALSE(plans.assign("nobody", std::string("home")));
    CHECK_THROWS_AS(plans.assign("bob", std::string("nosuch")), std::invalid_argument);

    store::StateStore(scratch.db())
        .upsert({alice, "throttled", 2'000'000, 1'000'000, "100% used", now, now - 1h, 80, {}});
    store::SubscriberQueries q(scratch.db());
    const auto ids = [&](store::SubscriberFilter f) {
        std::vector<std::string> out;
        for (const auto& v : q.page(f, "", 10, now)) {
            out.push_back(v.external_id);
        }
        return out;
    };
    CHECK(ids({"", "home", ""}) == std::vector<std::string>{"alice"});
    CHECK(ids({"", "", "throttled"}) == std::vector<std::string>{"alice"});
    CHECK(ids({"", "", "normal"}) == std::vector<std::string>{"bob"});  // no row = normal
    CHECK(ids({"", "", "blocked"}).empty());
    CHECK(q.page("", "", 10, now).at(0).plan == "home");
    CHECK(plans.assign("alice", std::nullopt));
    CHECK(ids({"", "home", ""}).empty());
}

TEST_CASE("quota overrides are per cycle") {
    ScratchDatabase scratch;
    const auto id = store::SubscriberStore(scratch.db()).add("alice", {}, dbtest::now_us() - 1h);
    store::QuotaStore quotas(scratch.db());
    const auto cycle = dbtest::current_month();
    const auto next = core::next_month_start_utc(cycle);
    CHECK(quotas.set_override(id, cycle, 5000));
    CHECK_FALSE(quotas.set_override(id, cycle, 6000));
    CHECK(quotas.set_override(id, next, 7000));
    CHECK(quotas.find_override(id, cycle)->quota_bytes == 6000);
    CHECK(quotas.find_override(id, next)->quota_bytes == 7000);
    CHECK(quotas.delete_override(id, cycle));
    CHECK_FALSE(quotas.delete_override(id, cycle));
    CHECK_FALSE(quotas.find_override(id, cycle).has_value());
    CHECK(quotas.find_override(id, next).has_value());
    CHECK_THROWS_AS(quotas.set_override(id, cycle, 1ull << 63), std::invalid_argument);

    // find() reads the override of the cycle cycle_of chooses.
    const auto d = store::SubscriberQueries(scratch.db())
                       .find("alice", dbtest::now_us(),
                             [&](core::TimePoint, const std::optional<std::string>& plan,
                                 const std::optional<std::string>&) {
                                 CHECK_FALSE(plan.has_value());
                                 return store::CycleSpan{next, core::next_month_start_utc(next)};
                             });
    REQUIRE(d.has_value());
    CHECK(d->quota_override == 7000);
    CHECK(d->span.start == next);
}

TEST_CASE("top-ups: 20 concurrent retries with one key credit once") {
    ScratchDatabase scratch;
    const auto id = store::SubscriberStore(scratch.db()).add("alice", {}, dbtest::now_us() - 1h);
    constexpr int kRetries = 20;
    const auto request = topup(1'000'000, std::string("order-42"));
    std::mutex mu;
    std::vector<store::TopUpResult> results;
    const auto r = dbtest::race(scratch.url(), kRetries, [&](int, store::Database& db) {
        auto result = store::QuotaStore(db).add_topup(id, request);
        std::lock_guard lock(mu);
        results.push_back(result);
    });
    CHECK(r.won == kRetries);
    CHECK(scratch.count("topups") == 1);
    CHECK(scratch.scalar("SELECT sum(bytes) FROM topups") == 1'000'000);
    int fresh = 0;
    std::set<std::int64_t> ids;
    for (const auto& x : results) {
        fresh += x.replayed ? 0 : 1;
        ids.insert(x.topup.id);
        CHECK(x.topup.bytes == 1'000'000);
        CHECK(x.topup.expires_at == request.expires_at);
    }
    CHECK(fresh == 1);
    CHECK(ids.size() == 1);
}

TEST_CASE("top-ups: 20 racing credits of 0.1 EB stop exactly at the 1 EB limit") {
    ScratchDatabase scratch;
    const auto id = store::SubscriberStore(scratch.db()).add("alice", {}, dbtest::now_us() - 1h);
    const auto tenth = core::kMaxQuotaBytes / 10;
    const auto r = dbtest::race(scratch.url(), 20, [&](int, store::Database& db) {
        store::QuotaStore(db).add_topup(id, topup(tenth, std::nullopt));
    });
    CHECK(r.won == 10);
    CHECK(r.conflicts == 10);  // AllowanceLimitExceeded, a ConflictError
    CHECK(scratch.scalar("SELECT sum(bytes) FROM topups") ==
          static_cast<std::int64_t>(core::kMaxQuotaBytes));
    store::QuotaStore quotas(scratch.db());
    CHECK_THROWS_AS(quotas.add_topup(id, topup(1, std::nullopt)), store::AllowanceLimitExceeded);
    // Expired ones leave room again.
    scratch.exec(
        "UPDATE topups SET created_at = created_at - interval '2 days', "
        "expires_at = created_at - interval '1 day' WHERE id = (SELECT min(id) FROM topups)");
    CHECK_FALSE(quotas.add_topup(id, topup(tenth, std::nullopt)).replayed);
    CHECK_THROWS_AS(quotas.add_topup(id, topup(1, std::nullopt)), store::AllowanceLimitExceeded);
}

TEST_CASE("top-ups: a reused key with another request changes nothing; no key always credits") {
    ScratchDatabase scratch;
    const auto id = store::SubscriberStore(scratch.db()).add("alice", {}, dbtest::now_us() - 1h);
    store::QuotaStore quotas(scratch.db());
    const auto first = quotas.add_topup(id, topup(100, std::string("k1"), 'a'));
    CHECK_FALSE(first.replayed);
    CHECK_THROWS_AS(quotas.add_topup(id, topup(200, std::string("k1"), 'b')),
                    store::IdempotencyKeyReused);
    CHECK(quotas.add_topup(id, topup(100, std::string("k1"), 'A')).replayed);  // hex case
    quotas.add_topup(id, topup(5, std::nullopt));
    quotas.add_topup(id, topup(5, std::nullopt));
    CHECK(scratch.count("topups") == 3);
    CHECK_THROWS_AS(quotas.add_topup(id, topup(0, std::nullopt)), std::invalid_argument);
    auto expired = topup(1, std::nullopt);
    expired.expires_at = expired.created_at;
    CHECK_THROWS_AS(quotas.add_topup(id, expired), std::invalid_argument);
    CHECK_THROWS_AS(quotas.add_topup(id, topup(1ull << 63, std::nullopt)), std::invalid_argument);

    // Active ones only; pages newest first.
    scratch.exec(
        "UPDATE topups SET expires_at = created_at + interval '1 second', "
        "created_at = created_at - interval '1 day' WHERE bytes = 100");
    CHECK(quotas.active_topups(id, dbtest::now_us() + 2s).size() == 2);
    const auto page1 = quotas.topups(id, 0, 2);
    REQUIRE(page1.size() == 2);
    CHECK(page1[0].id > page1[1].id);
    const auto page2 = quotas.topups(id, page1.back().id, 2);
    REQUIRE(page2.size() == 1);
    CHECK(page2[0].idempotency_key == "k1");
}

TEST_CASE("events: inserted and paged newest first; states upserted") {
    ScratchDatabase scratch;
    const auto now = dbtest::now_us();
    const auto id = store::SubscriberStore(scratch.db()).add("alice", {}, now - 1h);
    store::EventStore events(scratch.db());
    std::vector<std::int64_t> made;
    for (int i = 0; i < 7; ++i) {
        made.push_back(events.insert({id, now + std::chrono::seconds(i), "warning", std::nullopt,
                                      std::nullopt, "warn " + std::to_string(i),
                                      static_cast<std::uint64_t>(i), 100, R"({"percent": 80})"}));
    }
    CHECK_THROWS_AS(events.insert({id, {}, "nonsense", {}, {}, "x", {}, {}, "{}"}),
                    std::invalid_argument);
    CHECK_THROWS_AS(events.insert({id, {}, "state", {}, {}, "x", {}, {}, "[]"}),
                    std::invalid_argument);
    std::vector<std::int64_t> seen;
    std::int64_t before = 0;
    while (true) {
        const auto page = events.page(id, before, 3);
        for (const auto& e : page) {
            seen.push_back(e.id);
        }
        if (page.size() < 3) {
            break;
        }
        before = page.back().id;
    }
    CHECK(seen == std::vector<std::int64_t>(made.rbegin(), made.rend()));
    const auto newest = events.page(id, 0, 1).at(0);
    CHECK(newest.reason == "warn 6");
    CHECK(newest.at == now + 6s);
    CHECK(newest.counted_bytes == 6u);
    CHECK(newest.detail_json == R"({"percent": 80})");

    store::StateStore states(scratch.db());
    CHECK_FALSE(states.get(id).has_value());
    states.upsert({id, "blocked", std::nullopt, std::nullopt, "over", now, std::nullopt, 95, {}});
    states.upsert({id, "throttled", 1000, 500, "slow", now + 1s, now, 80, {}});
    const auto st = states.get(id);
    REQUIRE(st.has_value());
    CHECK(st->state == "throttled");
    CHECK(st->down_bps == 1000u);
    CHECK(st->since == now + 1s);
    CHECK(st->warned_percent == 80);
    CHECK(states.all().size() == 1);
    CHECK_THROWS_AS(states.upsert({id, "asleep", {}, {}, "x", now, {}, 0, {}}),
                    std::invalid_argument);
}

TEST_CASE("policy changes wake the daemon through NOTIFY ctquota_policy") {
    ScratchDatabase scratch;
    const auto id = store::SubscriberStore(scratch.db()).add("alice", {}, dbtest::now_us() - 1h);
    pqxx::connection listener(scratch.url());
    Collector collector(listener);
    const auto drain = [&] {
        collector.payloads.clear();
        for (int i = 0; i < 50 && collector.payloads.empty(); ++i) {
            listener.await_notification(0, 20'000);
        }
        listener.get_notifs();
        return std::set<std::string>(collector.payloads.begin(), collector.payloads.end());
    };
    const auto sid = std::to_string(id);
    store::QuotaStore quotas(scratch.db());
    quotas.add_topup(id, topup(10, std::nullopt));
    CHECK(drain() == std::set<std::string>{sid});
    quotas.set_override(id, dbtest::current_month(), 10);
    CHECK(drain() == std::set<std::string>{sid});
    quotas.delete_override(id, dbtest::current_month());
    CHECK(drain() == std::set<std::string>{sid});
    store::PlanStore plans(scratch.db());
    plans.upsert("home", kPlanJson, store::PlanSource::Api);
    CHECK(drain() == std::set<std::string>{"*"});
    plans.assign("alice", std::string("home"));
    CHECK(drain() == std::set<std::string>{sid});
    plans.assign("alice", std::string("home"));  // unchanged: no wake-up
    CHECK(drain().empty());
}
