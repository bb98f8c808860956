#include <doctest/doctest.h>

#include "core/address.hpp"

using ctquota::core::IpAddress;
using ctquota::core::Prefix;

TEST_CASE("prefix parsing: table") {
    struct Row {
        const char* text;
        bool ok;
        const char* canonical;
    };
    const Row rows[] = {
        {"100.64.0.5", true, "100.64.0.5/32"},
        {"100.64.0.5/32", true, "100.64.0.5/32"},
        {"100.64.3.7/10", true, "100.64.0.0/10"},
        {"0.0.0.0/0", true, "0.0.0.0/0"},
        {"2001:db8:1::/56", true, "2001:db8:1::/56"},
        {"2001:db8:1:ff::1/48", true, "2001:db8:1::/48"},
        {"2001:db8::1", true, "2001:db8::1/128"},
        {"100.64.0.5/33", false, ""},
        {"100.64.0.5/", false, ""},
        {"100.64.0.5/-1", false, ""},
        {"100.64.0.5/3x", false, ""},
        {"2001:db8::/129", false, ""},
        {"300.1.1.1", false, ""},
        {"", false, ""},
        {"hello", false, ""},
        {"100.64.0.5 /32", false, ""},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        auto p = Prefix::parse(r.text);
        REQUIRE(p.has_value() == r.ok);
        if (r.ok) {
            CHECK(p->to_string() == r.canonical);
        }
    }
}

TEST_CASE("prefix containment respects family and length") {
    auto p = *Prefix::parse("100.64.0.0/10");
    CHECK(p.contains(*IpAddress::parse("100.127.255.255")));
    CHECK_FALSE(p.contains(*IpAddress::parse("100.128.0.0")));
    CHECK_FALSE(p.contains(*IpAddress::parse("::ffff:100.64.0.1")));
    auto q = *Prefix::parse("2001:db8:1::/56");
    CHECK(q.contains(*IpAddress::parse("2001:db8:1:ff::9")));
    CHECK_FALSE(q.contains(*IpAddress::parse("2001:db8:1:100::1")));
}
