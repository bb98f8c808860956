#include <doctest/doctest.h>

#include <algorithm>

#include "db_fixture.hpp"
#include "store/subscriber_store.hpp"

using namespace ctquota;
using namespace std::chrono_literals;
using ctquota::dbtest::prefix;
using ctquota::dbtest::ScratchDatabase;

namespace {

std::string invalid_argument_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    FAIL("expected std::invalid_argument");
    return {};
}

}  // namespace

TEST_CASE("subscribers: add, list, load bindings, remove") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    const auto t0 = dbtest::now_us() - 1h;

    const auto alice = subscribers.add(
        "alice", {prefix("100.64.0.7"), prefix("2001:db8:7::/56"), prefix("100.64.0.7/32")}, t0);
    const auto bob = subscribers.add("bob", {prefix("100.64.1.0/29")}, t0);
    CHECK(alice > 0);
    CHECK(bob != alice);

    auto list = subscribers.list();
    REQUIRE(list.size() == 2);
    CHECK(list[0].external_id == "alice");
    CHECK(list[0].id == alice);
    // The duplicate in add() was folded; cidr text is canonical.
    CHECK(list[0].addresses == std::vector<std::string>{"100.64.0.7/32", "2001:db8:7::/56"});
    CHECK(list[1].addresses == std::vector<std::string>{"100.64.1.0/29"});

    auto bindings = subscribers.load_bindings(dbtest::now_us());
    REQUIRE(bindings.size() == 3);
    CHECK(bindings[0].subscriber == alice);
    CHECK(bindings[0].prefix == prefix("100.64.0.7/32"));
    CHECK(bindings[0].valid_from == t0);  // exact to the microsecond
    CHECK_FALSE(bindings[0].valid_until.has_value());
    CHECK(bindings[2].subscriber == bob);

    const auto t1 = dbtest::now_us() - 1min;
    CHECK(subscribers.remove("alice", t1));
    CHECK_FALSE(subscribers.remove("alice", t1));
    CHECK_FALSE(subscribers.remove("nobody", t1));
    list = subscribers.list();
    REQUIRE(list.size() == 1);
    CHECK(list[0].external_id == "bob");
    // Alice's bindings ended at t1: gone from now on, still in the table as history.
    bindings = subscribers.load_bindings(dbtest::now_us());
    REQUIRE(bindings.size() == 1);
    CHECK(bindings[0].subscriber == bob);
    const auto history = subscribers.load_bindings(t1 - 1s);
    REQUIRE(history.size() == 3);
    CHECK(history[0].valid_until == t1);
    CHECK(scratch.scalar("SELECT count(*) FROM subscribers WHERE removed_at IS NOT NULL") == 1);
}

TEST_CASE("subscribers: duplicates are refused and change nothing; a removed one can return") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    const auto t0 = dbtest::now_us() - 1h;
    const auto id = subscribers.add("alice", {prefix("100.64.0.7")}, t0);

    CHECK(invalid_argument_of([&] { subscribers.add("alice", {prefix("100.64.0.8")}, t0); }) ==
          "subscriber 'alice' already exists");
    CHECK(scratch.count("subscribers") == 1);
    CHECK(scratch.count("subscriber_bindings") == 1);

    // An address held by someone else is refused, naming the holder; bob is not created.
    CHECK(invalid_argument_of([&] {
              subscribers.add("bob", {prefix("100.64.0.9"), prefix("100.64.0.7")}, t0 + 1min);
          }) == "address 100.64.0.7/32 is bound to subscriber 'alice' at that time");
    CHECK(scratch.count("subscribers") == 1);
    CHECK(scratch.count("subscriber_bindings") == 1);
    // The database enforces it too, whoever writes.
    CHECK_THROWS(scratch.exec(
        "INSERT INTO subscriber_bindings (subscriber_id, prefix, valid_from) VALUES (" +
        std::to_string(id) + ", '100.64.0.7/32', now())"));

    const auto t1 = dbtest::now_us() - 30min;
    REQUIRE(subscribers.remove("alice", t1));
    // The address is free from t1 on: bob takes it; alice comes back with her old id.
    const auto bob = subscribers.add("bob", {prefix("100.64.0.7")}, t1);
    CHECK(subscribers.add("alice", {prefix("100.64.0.8")}, t1 + 1min) == id);
    const auto bindings = subscribers.load_bindings(dbtest::now_us());
    REQUIRE(bindings.size() == 2);
    CHECK(bindings[0].subscriber == bob);
    CHECK(bindings[1].subscriber == id);
    CHECK(bindings[1].prefix == prefix("100.64.0.8"));
}

TEST_CASE("subscribers: bad ids are refused before any SQL; odd ones are stored verbatim") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    const auto t0 = dbtest::now_us();
    CHECK(invalid_argument_of([&] { subscribers.add("", {}, t0); }).find("empty") !=
          std::string::npos);
    CHECK(invalid_argument_of([&] {
              subscribers.add(std::string(201, 'x'), {}, t0);
          }).find("longer than 200") != std::string::npos);
    CHECK(invalid_argument_of([&] {
              subscribers.add(std::string("a\0b", 3), {}, t0);
          }).find("control characters") != std::string::npos);
    CHECK(invalid_argument_of([&] { subscribers.add("a\nb", {}, t0); }).find("control") !=
          std::string::npos);
    CHECK(scratch.count("subscribers") == 0);

    const std::vector<std::string> odd = {"x'); DROP TABLE subscribers; --",
                                          "robert\"; DELETE FROM usage_period; --",
                                          "back\\slash",
                                          "$1",
                                          "ünïcødé ✓",
                                          "{1,2}",
                                          std::string(200, 'z')};
    for (const auto& id : odd) {
        subscribers.add(id, {}, t0);
    }
    const auto list = subscribers.list();
    std::vector<std::string> stored;
    for (const auto& s : list) {
        stored.push_back(s.external_id);
    }
    auto expected = odd;
    std::sort(expected.begin(), expected.end());
    std::sort(stored.begin(), stored.end());
    CHECK(stored == expected);
    CHECK(scratch.count("subscribers") == static_cast<std::int64_t>(odd.size()));
    for (const auto& id : odd) {
        CAPTURE(id);
        const auto totals = subscribers.current_usage(id, t0);
        REQUIRE(totals.has_value());
        CHECK(totals->external_id == id);
        CHECK(subscribers.remove(id, t0 + 1s));
    }
    CHECK(subscribers.list().empty());
}

TEST_CASE("subscribers: future bindings load; the fingerprint follows every change") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    const auto now = dbtest::now_us();
    const auto empty = subscribers.bindings_fingerprint();
    CHECK(subscribers.bindings_fingerprint() == empty);

    subscribers.add("later", {prefix("100.64.3.1")}, now + 1h);
    const auto after_add = subscribers.bindings_fingerprint();
    CHECK(after_add != empty);
    CHECK(subscribers.bindings_fingerprint() == after_add);
    const auto bindings = subscribers.load_bindings(now);
    REQUIRE(bindings.size() == 1);
    CHECK(bindings[0].valid_from == now + 1h);
    // Not active yet, so list() shows no address.
    REQUIRE(subscribers.list().size() == 1);
    CHECK(subscribers.list()[0].addresses.empty());

    subscribers.add("now", {prefix("100.64.3.2")}, now - 1h);
    const auto after_second = subscribers.bindings_fingerprint();
    CHECK(after_second != after_add);
    // Removing before a binding starts deletes it; removing later ends it.
    REQUIRE(subscribers.remove("later", now));
    const auto after_remove = subscribers.bindings_fingerprint();
    CHECK(after_remove != after_second);
    CHECK(scratch.count("subscriber_bindings") == 1);
    REQUIRE(subscribers.remove("now", now));
    CHECK(subscribers.bindings_fingerprint() != after_remove);
    CHECK(subscribers.load_bindings(now).empty());
}

TEST_CASE("current_usage: unknown is nullopt, known without usage is zero") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    const auto now = dbtest::now_us();
    CHECK_FALSE(subscribers.current_usage("ghost", now).has_value());
    subscribers.add("quiet", {}, now);
    const auto totals = subscribers.current_usage("quiet", now);
    REQUIRE(totals.has_value());
    CHECK(totals->usage == core::Usage{});
    CHECK(totals->cycle_start == core::month_start_utc(now));
    CHECK_FALSE(totals->updated_at.has_value());
}
