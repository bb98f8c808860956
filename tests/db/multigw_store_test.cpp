// Several gateways on one database (README "Several gateways"): a flush
// announces the subscribers it changed on NOTIFY ctquota_usage (listed, or
// by its time when too many), and two engines recording the same decision
// about the same subscriber record it once.
#include <doctest/doctest.h>

#include <algorithm>

#include "core/usage_notice.hpp"
#include "db_fixture.hpp"
#include "store/policy_store.hpp"
#include "store/usage_store.hpp"

using namespace ctquota;
using namespace std::chrono_literals;
using ctquota::dbtest::ScratchDatabase;

namespace {

std::vector<core::SubscriberId> add_subscribers(ScratchDatabase& scratch, int n) {
    std::vector<core::SubscriberId> ids;
    for (const auto& r : scratch.query("INSERT INTO subscribers (external_id) SELECT 's' || g "
                                       "FROM generate_series(1, " +
                                       std::to_string(n) + ") g RETURNING id")) {
        ids.push_back(r[0].as<core::SubscriberId>());
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

// The usage notices the next flush sends, decoded (the listener's first
// wait() only connects and says "*").
std::vector<core::UsageNotice> notices_of(store::PolicyListener& listener) {
    std::vector<core::UsageNotice> out;
    for (int i = 0; i < 20 && out.empty(); ++i) {
        for (const auto& p : listener.wait(100ms).usage) {
            const auto n = core::decode_usage_notice(p);
            REQUIRE(n.has_value());
            out.push_back(*n);
        }
    }
    return out;
}

store::PolicyDecision throttled(core::SubscriberId id, unsigned warned) {
    const auto now = dbtest::now_us();
    store::PolicyDecision d;
    d.external_id = "s1";
    d.state = {id, "throttled", 2000, 1000, "over", now, dbtest::current_month(), warned, {}};
    store::NewEvent state{id, now, "state", "normal", "throttled", "over", 10, 5, "{}"};
    store::NewEvent warning{id, now, "warning", {}, {}, "warned", 10, 5, "{}"};
    d.events = {state, warning};
    return d;
}

}  // namespace

TEST_CASE("a flush names the subscribers it changed to the other gateways") {
    ScratchDatabase scratch;
    const auto ids = add_subscribers(scratch, 3);
    store::PolicyListener listener(scratch.url());
    CHECK(listener.wait(0ms).policy == std::vector<std::string>{"*"});
    store::UsageStore usage(scratch.db(), "gw-a");
    usage.flush(dbtest::usage_batch(ids, dbtest::usage(10, 20, 1, 1)));
    const auto notices = notices_of(listener);
    REQUIRE(notices.size() == 1);
    CHECK(notices[0].gateway == "gw-a");
    CHECK(notices[0].ids == ids);
    CHECK_FALSE(notices[0].since_us.has_value());
}

TEST_CASE("a flush of more subscribers than a notice lists names its time instead") {
    ScratchDatabase scratch;
    const auto ids = add_subscribers(scratch, static_cast<int>(core::kMaxNoticeIds) + 1);
    store::PolicyListener listener(scratch.url());
    listener.wait(0ms);
    store::UsageStore usage(scratch.db(), "gw-b");
    usage.flush(dbtest::usage_batch(ids, dbtest::usage(10, 20, 1, 1)));
    store::UsageStore(scratch.db(), "gw-c")
        .flush(dbtest::usage_batch({ids.front()}, dbtest::usage(1, 1, 1, 1)));
    auto notices = notices_of(listener);
    for (int i = 0; i < 20 && notices.size() < 2; ++i) {
        for (const auto& p : listener.wait(100ms).usage) {
            notices.push_back(*core::decode_usage_notice(p));
        }
    }
    REQUIRE(notices.size() == 2);
    CHECK(notices[0].gateway == "gw-b");
    REQUIRE(notices[0].since_us.has_value());
    CHECK(notices[0].ids.empty());
    CHECK(notices[1].gateway == "gw-c");
    CHECK(notices[1].ids == std::vector<core::SubscriberId>{ids.front()});
    store::PolicyStore policies(scratch.db());
    auto changed = policies.changed_since("gw-b", *notices[0].since_us);
    std::sort(changed.begin(), changed.end());
    CHECK(changed == ids);  // gw-b's rows only: gw-c's flush is its own notice
    CHECK(policies.changed_since("gw-b", *notices[0].since_us + 3'600'000'000).empty());
}

TEST_CASE("two gateways recording the same decision record it once") {
    ScratchDatabase scratch;
    const auto id = add_subscribers(scratch, 1).at(0);
    store::PolicyStore gw1(scratch.db());
    store::Database second(scratch.url());
    store::PolicyStore gw2(second);
    CHECK(gw1.record({throttled(id, 80)}, nullptr).size() == 2);
    CHECK(gw2.record({throttled(id, 80)}, nullptr).empty());  // all of it is there
    CHECK(scratch.count("enforcement_events") == 2);
    // The same state, a higher warning: only the warning is new.
    CHECK(gw2.record({throttled(id, 95)}, nullptr).size() == 1);
    CHECK(scratch.scalar("SELECT count(*) FROM enforcement_events WHERE kind = 'state'") == 1);
    CHECK(scratch.scalar("SELECT warned_percent FROM subscriber_state") == 95);
    // A lower warning from a gateway that lags keeps the higher one.
    CHECK(gw1.record({throttled(id, 80)}, nullptr).empty());
    CHECK(scratch.scalar("SELECT warned_percent FROM subscriber_state") == 95);
    // Another state is recorded, from the row's state.
    auto normal = throttled(id, 95);
    normal.state.state = "normal";
    normal.state.down_bps = normal.state.up_bps = std::nullopt;
    normal.events.resize(1);
    CHECK(gw1.record({normal}, nullptr).size() == 1);
    CHECK(gw2.record({normal}, nullptr).empty());
    CHECK(scratch.count("enforcement_events") == 4);
}
