// The store functions behind the REST API: tokens, subscriber reads, usage pages,
// and conflicts reported as ConflictError (including a race between two adds).
#include <doctest/doctest.h>

#include <mutex>
#include <thread>
#include <vector>

#include "db_fixture.hpp"
#include "store/subscriber_queries.hpp"
#include "store/subscriber_store.hpp"
#include "store/token_store.hpp"
#include "store/usage_store.hpp"

using namespace ctquota;
using namespace std::chrono_literals;
using ctquota::dbtest::prefix;
using ctquota::dbtest::ScratchDatabase;

namespace {

const std::string kHashA(64, 'a');
const std::string kHashB(64, 'b');

}  // namespace

TEST_CASE("api tokens: add, find by hash, list, revoke") {
    ScratchDatabase scratch;
    store::TokenStore tokens(scratch.db());
    const auto a = tokens.add("ops", "admin", kHashA);
    const auto b = tokens.add("", "billing", kHashB);
    CHECK(tokens.find_active(kHashA)->role == "admin");
    CHECK(tokens.find_active(kHashB)->id == b);
    CHECK_FALSE(tokens.find_active(std::string(64, 'c')).has_value());
    CHECK(tokens.revoke(a));
    CHECK_FALSE(tokens.revoke(a));
    CHECK_FALSE(tokens.find_active(kHashA).has_value());
    const auto all = tokens.list();
    REQUIRE(all.size() == 2);
    CHECK(all[0].revoked_at.has_value());
    CHECK(scratch.scalar("SELECT length(token_sha256) FROM api_tokens WHERE id = " +
                         std::to_string(b)) == 32);
    CHECK_THROWS_AS(tokens.add("x", "root", std::string(64, 'd')), std::invalid_argument);
    CHECK_THROWS_AS(tokens.add("x", "admin", "abc"), std::invalid_argument);
    CHECK_THROWS_AS(tokens.add("x", "admin", kHashB), store::DatabaseError);  // unique hash
}

TEST_CASE("conflicts are ConflictError and change nothing") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    const auto t0 = dbtest::now_us() - 1h;
    subscribers.add("alice", {prefix("100.64.0.0/24")}, t0);
    CHECK_THROWS_AS(subscribers.add("alice", {}, t0), store::ConflictError);
    CHECK_THROWS_AS(subscribers.add("bob", {prefix("100.64.0.0/24")}, t0), store::ConflictError);
    CHECK(scratch.count("subscribers") == 1);
    CHECK(scratch.count("subscriber_bindings") == 1);
}

TEST_CASE("two concurrent adds of one address: one wins, the other is a ConflictError") {
    ScratchDatabase scratch;
    constexpr int kRacers = 8;
    const auto r = dbtest::race(scratch.url(), kRacers, [](int i, store::Database& db) {
        store::SubscriberStore(db).add("racer-" + std::to_string(i), {prefix("100.64.9.9")},
                                       dbtest::now_us() - 1h);
    });
    CHECK(r.won == 1);
    CHECK(r.conflicts == kRacers - 1);
    CHECK(scratch.count("subscriber_bindings") == 1);
}

TEST_CASE("subscriber reads: find with usage, pages in id order, removed ones hidden") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::SubscriberQueries queries(scratch.db());
    const auto now = dbtest::now_us();
    const auto alice =
        subscribers.add("alice", {prefix("2001:db8::/56"), prefix("100.64.0.1")}, now - 1h);
    subscribers.add("Bob", {}, now - 1h);
    subscribers.add("carol", {}, now - 1h);
    store::UsageStore(scratch.db(), "gw-1")
        .flush(dbtest::usage_batch({alice}, dbtest::usage(100, 200, 3, 4)));

    const auto found = queries.find("alice", now, dbtest::current_month());
    REQUIRE(found.has_value());
    CHECK(found->subscriber.addresses ==
          std::vector<std::string>{"100.64.0.1/32", "2001:db8::/56"});
    CHECK(found->cycle.usage.up.bytes == 100);
    CHECK(found->cycle.usage.down.packets == 4);
    CHECK(found->cycle.updated_at.has_value());
    CHECK_FALSE(queries.find("nobody", now, dbtest::current_month()).has_value());

    const auto first = queries.page("", "", 2, now);
    REQUIRE(first.size() == 2);
    const auto rest = queries.page("", first.back().external_id, 10, now);
    CHECK(first.size() + rest.size() == 3);
    CHECK(queries.page("BO", "", 10, now).at(0).external_id == "Bob");

    subscribers.remove("carol", now);
    CHECK_FALSE(queries.find("carol", now + 1s, dbtest::current_month()).has_value());
    CHECK(queries.page("carol", "", 10, now + 1s).empty());

    const auto month = dbtest::current_month();
    const auto usage = queries.usage_page(month, month + 24h * 31, "", 10);
    REQUIRE(usage.size() == 3);  // carol existed during the cycle: listed, with zeros
    CHECK(usage[0].usage.up.bytes + usage[1].usage.up.bytes + usage[2].usage.up.bytes == 100);
}
