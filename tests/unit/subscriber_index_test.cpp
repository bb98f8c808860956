#include <doctest/doctest.h>

#include "core/subscriber_index.hpp"
#include "test_helpers.hpp"

using namespace std::chrono;
using namespace ctquota::core;
using ctquota::test::ip;

namespace {
TimePoint t(int seconds) {
    return TimePoint{std::chrono::seconds{seconds}};
}
Binding bind(SubscriberId s, const char* prefix, int from = 0, std::optional<int> until = {}) {
    Binding b{s, *Prefix::parse(prefix), t(from), std::nullopt};
    if (until) {
        b.valid_until = t(*until);
    }
    return b;
}
}  // namespace

TEST_CASE("longest prefix wins, IPv4 and IPv6, nested prefixes") {
    SubscriberIndex index({
        bind(1, "100.64.0.0/10"),
        bind(2, "100.64.1.0/24"),
        bind(3, "100.64.1.7/32"),
        bind(4, "2001:db8::/32"),
        bind(5, "2001:db8:1::/56"),
        bind(6, "2001:db8:1:0:1::/80"),
        bind(7, "2001:db8:2::1/128"),
    });
    struct Row {
        const char* address;
        std::optional<SubscriberId> expected;
    };
    const Row rows[] = {
        {"100.64.1.7", 3},        {"100.64.1.8", 2},       {"100.65.0.1", 1},
        {"100.128.0.1", {}},      {"198.18.0.2", {}},      {"2001:db8:1::5", 5},
        {"2001:db8:1:0:1::9", 6}, {"2001:db8:1:ff::1", 5}, {"2001:db8:1:100::1", 4},
        {"2001:db8:2::1", 7},     {"2001:db8:2::2", 4},    {"2001:db9::1", {}},
    };
    for (const auto& r : rows) {
        CAPTURE(r.address);
        CHECK(index.lookup(ip(r.address), t(10)) == r.expected);
    }
}

TEST_CASE("bindings change over time: a dynamic address moves between subscribers") {
    SubscriberIndex index({
        bind(1, "100.64.9.9/32", 0, 100),
        bind(2, "100.64.9.9/32", 100, 200),
        bind(3, "100.64.9.0/24", 0),
    });
    CHECK(index.lookup(ip("100.64.9.9"), t(50)) == 1);
    CHECK(index.lookup(ip("100.64.9.9"), t(99)) == 1);
    CHECK(index.lookup(ip("100.64.9.9"), t(100)) == 2);
    CHECK(index.lookup(ip("100.64.9.9"), t(199)) == 2);
    // After the last /32 binding ends, the covering /24 applies.
    CHECK(index.lookup(ip("100.64.9.9"), t(200)) == 3);
    CHECK(index.lookup(ip("100.64.9.9"), t(-5)) == std::nullopt);
}

TEST_CASE("an empty index matches nothing") {
    SubscriberIndex index;
    CHECK_FALSE(index.lookup(ip("100.64.0.1"), t(0)).has_value());
    CHECK_FALSE(index.lookup(IpAddress{}, t(0)).has_value());
}
