// core::BindingRules: which prefixes may be bound at all (pools, minimum
// lengths), and the overlap test the store and the request check share.
#include <doctest/doctest.h>

#include "core/binding_rules.hpp"

using namespace ctquota::core;

namespace {

Prefix p(const char* text) {
    const auto parsed = Prefix::parse(text);
    REQUIRE(parsed.has_value());
    return *parsed;
}

}  // namespace

TEST_CASE("binding rules: minimum lengths and pools, each refusal naming its limit") {
    BindingRules rules;
    rules.pools = {p("100.64.0.0/10"), p("2001:db8::/32")};
    struct Row {
        const char* description;
        const char* prefix;
        const char* refusal;  // substring; "" when allowed
    };
    const Row rows[] = {
        {"a host inside the pool", "100.64.0.42", ""},
        {"the minimum itself", "100.127.255.0/24", ""},
        {"one bit short of the minimum", "100.64.0.0/23",
         "shorter than the shortest IPv4 binding allowed, /24"},
        {"the whole pool", "100.64.0.0/10", "/24 (subscribers.min_ipv4_prefix_length)"},
        {"everything", "0.0.0.0/0", "shorter"},
        {"outside the pool", "192.0.2.1",
         "192.0.2.1/32 is outside the subscriber pools (100.64.0.0/10, 2001:db8::/32"},
        {"just past the pool", "100.128.0.1", "outside"},
        {"an IPv6 site", "2001:db8:42::/48", ""},
        {"an IPv6 host", "2001:db8::1", ""},
        {"an IPv6 /40", "2001:db8::/40",
         "IPv6 binding allowed, /48 (subscribers.min_ipv6_prefix_length)"},
        {"IPv6 outside", "2001:db9::/48", "outside"},
        {"an IPv4-mapped address is IPv6, outside", "::ffff:100.64.0.1", "outside"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.description);
        const auto refusal = rules.refusal(p(r.prefix));
        if (std::string(r.refusal).empty()) {
            CHECK_FALSE(refusal.has_value());
        } else {
            REQUIRE(refusal.has_value());
            CHECK(refusal->find(r.refusal) != std::string::npos);
        }
    }
}

TEST_CASE("binding rules without pools: anywhere, but still the minimum") {
    const BindingRules rules;
    CHECK_FALSE(rules.refusal(p("192.0.2.0/24")).has_value());
    CHECK(rules.refusal(p("192.0.0.0/16")).has_value());
    CHECK(rules.refusal(p("::/0")).has_value());
}

TEST_CASE("overlap: containment either way, equal included, families apart") {
    CHECK(overlap(p("100.64.0.0/24"), p("100.64.0.7")));
    CHECK(overlap(p("100.64.0.7"), p("100.64.0.0/24")));
    CHECK(overlap(p("100.64.0.7"), p("100.64.0.7")));
    CHECK_FALSE(overlap(p("100.64.0.0/25"), p("100.64.0.128/25")));
    CHECK_FALSE(overlap(p("0.0.0.0/0"), p("::/0")));
    CHECK(covers(p("2001:db8::/32"), p("2001:db8:1::/48")));
    CHECK_FALSE(covers(p("2001:db8:1::/48"), p("2001:db8::/32")));
}

TEST_CASE("first_overlap finds nesting inside one request, not duplicates") {
    CHECK_FALSE(first_overlap({p("100.64.0.1"), p("100.64.0.1/32"), p("100.64.0.2")}).has_value());
    const auto pair = first_overlap({p("100.64.1.5"), p("100.64.0.9"), p("100.64.1.0/24")});
    REQUIRE(pair.has_value());
    CHECK(pair->first == p("100.64.1.0/24"));
    CHECK(pair->second == p("100.64.1.5"));
}
