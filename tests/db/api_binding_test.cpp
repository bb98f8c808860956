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

const core::BindingRules kRules;  // the config's defaults: no pools, /24 and /48

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
    store::BindingStore bindings(scratch.db(), kRules);
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
}

// What a refusal says, or "" when `attempt` went through.
template <typename Error, typename Fn>
std::string refusal_of(Fn&& attempt) {
    try {
        attempt();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST_CASE("bind: prefixes inside or around another binding, the own included, are conflicts") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::BindingStore bindings(scratch.db(), kRules);
    const auto now = dbtest::now_us();
    subscribers.add("alice", {prefix("100.64.5.0/26")}, now - 1h);
    subscribers.add("bob", {prefix("100.64.0.0/24")}, now - 1h);
    const auto before = scratch.count("subscriber_bindings");

    const auto inside = refusal_of<store::BindingConflict>(
        [&] { bindings.bind("alice", prefix("100.64.0.7"), now); });
    CHECK(inside ==
          "100.64.0.7/32 lies inside 100.64.0.0/24, bound to subscriber 'bob' at that time");
    subscribers.add("carol", {}, now);
    try {
        bindings.bind("carol", prefix("100.64.5.0/24"), now);
        FAIL("a prefix around alice's was bound");
    } catch (const store::BindingConflict& e) {
        CHECK(e.prefix() == "100.64.5.0/24");
        CHECK(e.holder() == "alice");
        CHECK(e.held_prefix() == "100.64.5.0/26");
    }
    // Nesting inside the own binding too: the enforcer's interval maps may not overlap.
    CHECK(refusal_of<store::BindingConflict>([&] {
              bindings.bind("alice", prefix("100.64.5.9"), now);
          }).find("subscriber 'alice'") != std::string::npos);
    CHECK(scratch.count("subscriber_bindings") == before);
    // A prefix may be replaced by one nested in it at the same instant.
    CHECK(bindings.replace("alice", {prefix("100.64.5.9")}, now));
    CHECK(bindings_of(scratch, "alice") == "100.64.5.0/26:ended 100.64.5.9/32:open");
}

TEST_CASE("bind and add: the rules refuse short prefixes and ones outside the pools") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    core::BindingRules rules;
    rules.pools = {prefix("100.64.0.0/10"), prefix("2001:db8::/32")};
    store::BindingStore bindings(scratch.db(), rules);
    const auto now = dbtest::now_us();
    subscribers.add("alice", {}, now - 1h, rules);

    CHECK(refusal_of<store::BindingRefused>(
              [&] { bindings.bind("alice", prefix("100.64.0.0/10"), now); }) ==
          "100.64.0.0/10 is shorter than the shortest IPv4 binding allowed, /24 "
          "(subscribers.min_ipv4_prefix_length)");
    CHECK(refusal_of<store::BindingRefused>([&] {
              bindings.bind("alice", prefix("2001:db8::/40"), now);
          }).find("/48") != std::string::npos);
    CHECK(refusal_of<store::BindingRefused>(
              [&] { bindings.bind("alice", prefix("192.0.2.1"), now); }) ==
          "192.0.2.1/32 is outside the subscriber pools (100.64.0.0/10, 2001:db8::/32; "
          "subscribers.pools)");
    CHECK(refusal_of<store::BindingRefused>([&] {
              subscribers.add("bob", {prefix("100.64.1.1"), prefix("0.0.0.0/0")}, now, rules);
          }).find("0.0.0.0/0") != std::string::npos);
    CHECK(refusal_of<store::BindingConflict>([&] {
              subscribers.add("bob", {prefix("100.64.1.0/24"), prefix("100.64.1.1")}, now, rules);
          }) == "100.64.1.1/32 overlaps 100.64.1.0/24 of the same request");
    CHECK(scratch.count("subscriber_bindings") == 0);
    CHECK(scratch.scalar("SELECT count(*) FROM subscribers WHERE external_id = 'bob'") == 0);
    CHECK(bindings.bind("alice", prefix("2001:db8:1::/48"), now)->created);
}

TEST_CASE("bindings stored before the rules stay, and only what a change adds is judged") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::BindingStore bindings(scratch.db(), kRules);
    const auto now = dbtest::now_us();
    subscribers.add("alice", {}, now - 1h);
    subscribers.add("bob", {}, now - 1h);
    // As an older ctquotad allowed: a /16, and bob's /32 inside it.
    for (const char* row : {"('alice', '100.65.0.0/16')", "('bob', '100.65.0.9/32')"}) {
        scratch.exec(std::string("INSERT INTO subscriber_bindings (subscriber_id, prefix, "
                                 "valid_from) SELECT s.id, v.p::cidr, now() - interval '1 hour' "
                                 "FROM (VALUES ") +
                     row + ") AS v(sub, p) JOIN subscribers s ON s.external_id = v.sub");
    }
    CHECK(bindings.replace("alice", {prefix("100.65.0.0/16"), prefix("100.66.0.1")}, now));
    CHECK(bindings_of(scratch, "alice") == "100.65.0.0/16:open 100.66.0.1/32:open");
    CHECK_FALSE(bindings.bind("bob", prefix("100.65.0.9"), now)->created);
    CHECK_THROWS_AS(bindings.bind("bob", prefix("100.65.1.9"), now), store::BindingConflict);
}

TEST_CASE("unbind ends the active binding, cancels a future one; then the address is free") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    store::BindingStore bindings(scratch.db(), kRules);
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
    store::BindingStore bindings(scratch.db(), kRules);
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
        store::BindingStore(db, kRules)
            .bind("racer-" + std::to_string(i), prefix("100.64.9.9"), dbtest::now_us());
    });
    CHECK(r.won == 1);
    CHECK(r.conflicts == kRacers - 1);
    CHECK(scratch.count("subscriber_bindings") == 1);
}

TEST_CASE("concurrent binds of nested prefixes (/24 ... /31) to different subscribers: one wins") {
    ScratchDatabase scratch;
    constexpr int kRacers = 8;
    for (int i = 0; i < kRacers; ++i) {
        store::SubscriberStore(scratch.db())
            .add("nest-" + std::to_string(i), {}, dbtest::now_us() - 1h);
    }
    const auto r = dbtest::race(scratch.url(), kRacers, [](int i, store::Database& db) {
        const auto p = prefix(("100.64.9.0/" + std::to_string(24 + i)).c_str());
        store::BindingStore(db, kRules).bind("nest-" + std::to_string(i), p, dbtest::now_us());
    });
    CHECK(r.won == 1);
    CHECK(r.conflicts == kRacers - 1);
    CHECK(scratch.count("subscriber_bindings") == 1);
}

TEST_CASE("concurrent adds with nested addresses: one wins") {
    ScratchDatabase scratch;
    constexpr int kRacers = 8;
    const auto r = dbtest::race(scratch.url(), kRacers, [](int i, store::Database& db) {
        const auto p = prefix(("100.64.10.0/" + std::to_string(24 + i)).c_str());
        store::SubscriberStore(db).add("adder-" + std::to_string(i), {p}, dbtest::now_us());
    });
    CHECK(r.won == 1);
    CHECK(r.conflicts == kRacers - 1);
    CHECK(scratch.count("subscriber_bindings") == 1);
}
