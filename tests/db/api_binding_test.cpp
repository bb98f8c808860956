// The store functions behind the series and address routes: usage series in
// UTC buckets summed over gateways, binding and releasing single addresses,
// replacing the set, and conflicts that change nothing.
#include <doctest/doctest.h>

#include <mutex>
#include <thread>
#include <vector>

#include "db_fixture.hpp"
#include "store/binding_store.hpp"
#include "store/subscriber_queries.hpp"
#include "store/subscriber_store.hpp"

using namespace ctquota;
using namespace std::chrono_literals;
using ctquota::dbtest::prefix;
using ctquota::dbtest::ScratchDatabase;

namespace {

core::TimePoint utc(int y, unsigned m, unsigned d, int h = 0) {
    using namespace std::chrono;
    return core::TimePoint{sys_days{year{y} / month{m} / d}} + hours{h};
}

void add_hour(ScratchDatabase& scratch, const char* sub, const char* hour, const char* gateway,
              int up_bytes) {
    scratch.exec(std::string("INSERT INTO usage_hourly (subscriber_id, hour, gateway_id, up_bytes, "
                             "down_bytes, up_packets, down_packets) SELECT id, '") +
                 hour + "', '" + gateway + "', " + std::to_string(up_bytes) +
                 ", 1, 1, 1 FROM subscribers WHERE external_id = '" + sub + "'");
}

// Bindings as "prefix:open|ended" for the subscriber, in prefix order.
std::string bindings_of(ScratchDatabase& scratch, const char* sub) {
    const auto rows = scratch.query(
        std::string("SELECT b.prefix::text || ':' || CASE WHEN b.valid_until IS NULL THEN 'open' "
                    "ELSE 'ended' END FROM subscriber_bindings b JOIN subscribers s ON s.id = "
                    "b.subscriber_id WHERE s.external_id = '") +
        sub + "' ORDER BY b.prefix, b.id");
    std::string out;
    for (const auto& r : rows) {
        out += (out.empty() ? "" : " ") + r[0].as<std::string>();
    }
    return out;
}

}  // namespace

TEST_CASE("usage series: UTC buckets summed over gateways, whatever the session time zone") {
    ScratchDatabase scratch;
    store::SubscriberStore(scratch.db()).add("alice", {}, dbtest::now_us() - 1h);
    add_hour(scratch, "alice", "2024-01-31 23:00:00+00", "gw-a", 100);
    add_hour(scratch, "alice", "2024-02-01 00:00:00+00", "gw-a", 10);
    add_hour(scratch, "alice", "2024-02-01 00:00:00+00", "gw-b", 5);
    add_hour(scratch, "alice", "2024-02-01 13:00:00+00", "gw-a", 1);
    add_hour(scratch, "alice", "2024-03-01 00:00:00+00", "gw-a", 1000);  // past `to`
    scratch.exec("ALTER DATABASE \"" + scratch.name() + "\" SET timezone = 'Pacific/Auckland'");
    store::Database db(scratch.url());
    store::SubscriberQueries q(db);
    const auto from = utc(2024, 1, 31);
    const auto to = utc(2024, 3, 1);

    const auto hours = q.usage_series("alice", from, to, store::SeriesUnit::Hour);
    REQUIRE(hours.has_value());
    REQUIRE(hours->size() == 3);
    CHECK((*hours)[1].start == utc(2024, 2, 1));
    CHECK((*hours)[1].usage.up.bytes == 15);
    CHECK((*hours)[1].usage.down.packets == 2);

    const auto days = q.usage_series("alice", from, to, store::SeriesUnit::Day);
    REQUIRE(days->size() == 2);
    CHECK((*days)[0].start == utc(2024, 1, 31));
    CHECK((*days)[0].usage.up.bytes == 100);
    CHECK((*days)[1].usage.up.bytes == 16);

    const auto months = q.usage_series("alice", utc(2024, 1, 1), to, store::SeriesUnit::Month);
    REQUIRE(months->size() == 2);
    CHECK((*months)[1].start == utc(2024, 2, 1));
    CHECK((*months)[1].usage.up.bytes == 16);

    CHECK_FALSE(q.usage_series("nobody", from, to, store::SeriesUnit::Hour).has_value());
    CHECK(
        q.usage_series("alice", utc(2023, 1, 1), utc(2023, 2, 1), store::SeriesUnit::Day)->empty());
}

TEST_CASE("bind: new, again (no change), another's address is a conflict, unknown subscriber") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::BindingStore bindings(scratch.db());
    const auto now = dbtest::now_us();
    subscribers.add("alice", {}, now - 1h);
    subscribers.add("bob", {prefix("100.64.0.0/24")}, now - 1h);

    const auto first = bindings.bind("alice", prefix("100.64.1.9"), now);
    REQUIRE(first.has_value());
    CHECK(first->created);
    CHECK(first->binding.prefix == "100.64.1.9/32");
    CHECK(first->binding.valid_from == now);
    const auto again = bindings.bind("alice", prefix("100.64.1.9/32"), now + 1s);
    CHECK_FALSE(again->created);
    CHECK(again->binding.valid_from == now);
    CHECK(scratch.count("subscriber_bindings") == 2);

    CHECK_THROWS_AS(bindings.bind("alice", prefix("100.64.0.0/24"), now), store::ConflictError);
    // A later start overlapping bob's open-ended binding is still a conflict.
    CHECK_THROWS_AS(bindings.bind("alice", prefix("100.64.0.0/24"), now + 24h),
                    store::ConflictError);
    CHECK_FALSE(bindings.bind("nobody", prefix("100.64.1.10"), now).has_value());
    CHECK(scratch.count("subscriber_bindings") == 2);
    // A more specific prefix inside bob's is allowed (longest match wins).
    CHECK(bindings.bind("alice", prefix("100.64.0.7"), now)->created);
}

TEST_CASE("unbind ends the active binding, cancels a future one; then the address is free") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::BindingStore bindings(scratch.db());
    const auto now = dbtest::now_us();
    subscribers.add("alice", {prefix("100.64.1.9")}, now - 1h);
    subscribers.add("bob", {}, now - 1h);
    bindings.bind("alice", prefix("100.64.1.10"), now + 1h);

    CHECK(bindings.unbind("alice", prefix("100.64.1.9"), now) == store::UnbindResult::Ended);
    CHECK(bindings_of(scratch, "alice") == "100.64.1.9/32:ended 100.64.1.10/32:open");
    CHECK(bindings.unbind("alice", prefix("100.64.1.9"), now + 1s) ==
          store::UnbindResult::NotBound);
    CHECK(bindings.unbind("alice", prefix("100.64.1.10"), now) == store::UnbindResult::Ended);
    CHECK(bindings_of(scratch, "alice") == "100.64.1.9/32:ended");
    CHECK(bindings.unbind("nobody", prefix("100.64.1.9"), now) ==
          store::UnbindResult::UnknownSubscriber);
    // Released at `now`: bob may have it from then on, not before.
    CHECK_THROWS_AS(bindings.bind("bob", prefix("100.64.1.9"), now - 1s), store::ConflictError);
    CHECK(bindings.bind("bob", prefix("100.64.1.9"), now)->created);
}

TEST_CASE("replace: keeps what stays, ends what goes, adds what is new; conflicts change nothing") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::BindingStore bindings(scratch.db());
    const auto now = dbtest::now_us();
    subscribers.add("alice", {prefix("100.64.1.1"), prefix("100.64.1.2")}, now - 1h);
    subscribers.add("bob", {prefix("100.64.2.1")}, now - 1h);
    const auto ids_before = scratch.scalar("SELECT min(id) FROM subscriber_bindings");

    CHECK(bindings.replace("alice", {prefix("100.64.1.2"), prefix("2001:db8::/56")}, now));
    CHECK(bindings_of(scratch, "alice") ==
          "100.64.1.1/32:ended 100.64.1.2/32:open 2001:db8::/56:open");
    CHECK(scratch.scalar("SELECT min(id) FROM subscriber_bindings") == ids_before);

    const auto before = bindings_of(scratch, "alice");
    CHECK_THROWS_AS(bindings.replace("alice", {prefix("100.64.2.1")}, now + 1s),
                    store::ConflictError);
    CHECK(bindings_of(scratch, "alice") == before);
    CHECK_FALSE(bindings.replace("nobody", {}, now));

    CHECK(bindings.replace("alice", {}, now + 2s));
    CHECK(bindings_of(scratch, "alice") ==
          "100.64.1.1/32:ended 100.64.1.2/32:ended 2001:db8::/56:ended");
    CHECK(store::SubscriberQueries(scratch.db())
              .find("alice", now + 3s, dbtest::current_month())
              ->subscriber.addresses.empty());
}

TEST_CASE("concurrent binds of one address to different subscribers: one wins") {
    ScratchDatabase scratch;
    constexpr int kRacers = 8;
    for (int i = 0; i < kRacers; ++i) {
        store::SubscriberStore(scratch.db())
            .add("racer-" + std::to_string(i), {}, dbtest::now_us() - 1h);
    }
    const auto r = dbtest::race(scratch.url(), kRacers, [](int i, store::Database& db) {
        store::BindingStore(db).bind("racer-" + std::to_string(i), prefix("100.64.9.9"),
                                     dbtest::now_us());
    });
    CHECK(r.won == 1);
    CHECK(r.conflicts == kRacers - 1);
    CHECK(scratch.count("subscriber_bindings") == 1);
}
