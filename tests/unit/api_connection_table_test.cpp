// ConnectionTable: who gets a connection when the API is full, table-driven
// where it can be; parse_query: the query string as handlers see it.
#include <doctest/doctest.h>

#include "api/connection_table.hpp"
#include "api/http_server.hpp"

using namespace std::chrono_literals;
using ctquota::api::Admission;
using ctquota::api::ConnectionTable;

namespace {

const ConnectionTable::TimePoint t0{};

}  // namespace

TEST_CASE("connection table: the per-address cap refuses the newcomer, others still get in") {
    ConnectionTable table({.total = 10, .per_address = 2});
    CHECK(table.admit("a", t0).admission == Admission::Admitted);
    CHECK(table.admit("a", t0).admission == Admission::Admitted);
    CHECK(table.admit("a", t0).admission == Admission::RefusedAddress);
    CHECK(table.admit("b", t0).admission == Admission::Admitted);
    CHECK(table.open_from("a") == 2);
    CHECK(table.open() == 3);
}

TEST_CASE("connection table: released connections give their slots back") {
    ConnectionTable table({.total = 2, .per_address = 2});
    const auto first = table.admit("a", t0);
    table.admit("a", t0);
    CHECK(table.admit("a", t0).admission == Admission::RefusedAddress);
    table.release(first.id);
    CHECK(table.open_from("a") == 1);
    CHECK(table.admit("a", t0).admission == Admission::Admitted);
    table.release(first.id);  // twice: no effect
    CHECK(table.open() == 2);
}

TEST_CASE("connection table: when full, the longest-waiting connection without a request goes") {
    ConnectionTable table({.total = 3, .per_address = 3});
    const auto slow1 = table.admit("x", t0);
    const auto slow2 = table.admit("y", t0 + 1s);
    const auto client = table.admit("c", t0 + 2s);
    table.busy(client.id);  // its request is being served
    const auto next = table.admit("z", t0 + 3s);
    REQUIRE(next.admission == Admission::Admitted);
    CHECK(next.evicts == slow1.id);
    // The evicted one still counts until it is closed, and is never chosen twice.
    const auto after = table.admit("w", t0 + 4s);
    CHECK(after.evicts == slow2.id);
    table.release(slow1.id);
    table.release(slow2.id);
    CHECK(table.open() == 3);
}

TEST_CASE("connection table: idle keep-alive connections that served a request go last") {
    ConnectionTable table({.total = 2, .per_address = 2});
    const auto client = table.admit("c", t0);
    table.busy(client.id);
    table.waiting(client.id, t0 + 1s);  // idle between its requests, the oldest now
    const auto attacker = table.admit("x", t0 + 2s);
    const auto flood = table.admit("y", t0 + 3s);
    CHECK(flood.evicts == attacker.id);
    table.release(attacker.id);
    // Only the client's connection and the newest are left waiting; the newest never served.
    const auto again = table.admit("z", t0 + 4s);
    CHECK(again.evicts == flood.id);
    table.release(flood.id);
    // Nothing but the client's idle connection left to evict: now it goes.
    table.busy(again.id);
    const auto last = table.admit("q", t0 + 5s);
    CHECK(last.evicts == client.id);
}

TEST_CASE("connection table: a flood outrunning its evictions never reaches kept connections") {
    ConnectionTable table({.total = 2, .per_address = 2});
    const auto client = table.admit("c", t0);
    table.busy(client.id);
    table.waiting(client.id, t0);
    const auto flood1 = table.admit("x", t0 + 1s);
    const auto flood2 = table.admit("y", t0 + 2s);
    CHECK(flood2.evicts == flood1.id);
    table.waiting(flood1.id, t0 + 3s);  // the victim's close has not happened yet
    // flood2 is new and waiting: it goes next; then nothing new is left.
    const auto z = table.admit("z", t0 + 3s);
    CHECK(z.evicts == flood2.id);
    table.busy(z.id);
    const auto refused = table.admit("w", t0 + 4s);
    CHECK(refused.admission == Admission::RefusedFull);  // two closes pending: wait for them
    table.release(flood1.id);
    table.release(flood2.id);
}

TEST_CASE("connection table: a refused broken request does not make a connection 'kept'") {
    ConnectionTable table({.total = 2, .per_address = 2});
    const auto client = table.admit("c", t0);
    table.busy(client.id);
    table.waiting(client.id, t0);
    const auto broken = table.admit("x", t0 + 1s);
    table.busy(broken.id, false);  // answered 431, lingering before the close
    table.waiting(broken.id, t0 + 2s);
    CHECK(table.admit("y", t0 + 3s).evicts == broken.id);
}

TEST_CASE("connection table: all busy, nothing to evict: refused") {
    ConnectionTable table({.total = 2, .per_address = 2});
    table.busy(table.admit("a", t0).id);
    table.busy(table.admit("b", t0).id);
    const auto r = table.admit("c", t0 + 1s);
    CHECK(r.admission == Admission::RefusedFull);
    CHECK_FALSE(r.evicts);
    CHECK(table.open() == 2);
}

TEST_CASE("connection table: waiting_ids lists the connections to close at stop") {
    ConnectionTable table({.total = 4, .per_address = 4});
    const auto a = table.admit("a", t0);
    const auto b = table.admit("a", t0);
    table.busy(b.id);
    const auto ids = table.waiting_ids();
    REQUIRE(ids.size() == 1);
    CHECK(ids[0] == a.id);
}

TEST_CASE("parse_query: decoded as a form, broken escapes kept as sent") {
    struct Row {
        const char* query;
        std::multimap<std::string, std::string> expected;
    };
    const Row rows[] = {
        {"", {}},
        {"a=1&b=2", {{"a", "1"}, {"b", "2"}}},
        {"q=x+y&q=%41%2f", {{"q", "x y"}, {"q", "A/"}}},
        {"flag&&=v", {{"flag", ""}, {"", "v"}}},
        {"bad=%ZZ", {{"bad", "%ZZ"}}},
    };
    for (const auto& row : rows) {
        CAPTURE(row.query);
        CHECK(ctquota::api::parse_query(row.query) == row.expected);
    }
}
