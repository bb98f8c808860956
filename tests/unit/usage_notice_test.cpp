#include <doctest/doctest.h>

#include "core/usage_notice.hpp"

using namespace ctquota::core;

TEST_CASE("usage notices: ids round-trip in payloads under PostgreSQL's limit") {
    std::vector<SubscriberId> ids;
    for (SubscriberId i = 0; i < 3000; ++i) {
        ids.push_back(1'000'000'000'000 + i * 7);
    }
    const auto payloads = encode_usage_notices("gw-1", ids);
    REQUIRE(payloads.size() > 1);  // 3000 ids of 13 digits do not fit in one
    std::vector<SubscriberId> back;
    for (const auto& p : payloads) {
        CHECK(p.size() <= kMaxNoticePayload);
        const auto n = decode_usage_notice(p);
        REQUIRE(n);
        CHECK(n->gateway == "gw-1");
        CHECK_FALSE(n->since_us);
        back.insert(back.end(), n->ids.begin(), n->ids.end());
    }
    CHECK(back == ids);
}

TEST_CASE("usage notices: none for no ids, none past the limit (the caller sends 'since')") {
    CHECK(encode_usage_notices("gw", {}).empty());
    CHECK(encode_usage_notices("gw", std::vector<SubscriberId>(kMaxNoticeIds, 1)).size() > 0);
    CHECK(encode_usage_notices("gw", std::vector<SubscriberId>(kMaxNoticeIds + 1, 1)).empty());
    const auto n = decode_usage_notice(since_prefix("gw a") + "1733550000123456");
    REQUIRE(n);
    CHECK(n->gateway == "gw a");
    CHECK(n->ids.empty());
    CHECK(n->since_us == 1733550000123456);
}

TEST_CASE("usage notices: malformed payloads are refused") {
    for (const char* bad : {"", "gw", "gw\n", "gw\n1,,2", "gw\n1,x", "gw\nsince ", "gw\nsince 1x",
                            "gw\n-", "gw\n99999999999999999999"}) {
        CAPTURE(bad);
        CHECK_FALSE(decode_usage_notice(bad));
    }
    const auto n = decode_usage_notice("gw\nx\n5");  // the last line break separates
    REQUIRE(n);
    CHECK(n->gateway == "gw\nx");
    CHECK(n->ids == std::vector<SubscriberId>{5});
}
