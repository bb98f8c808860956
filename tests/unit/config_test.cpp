#include <doctest/doctest.h>

#include "app/config.hpp"

using namespace ctquota::app;
using namespace std::chrono_literals;

TEST_CASE("a full config parses into typed values") {
    auto c = parse_config(R"(
[database]
url = "postgresql:///ctquota?host=/tmp/pg"
[conntrack]
poll_interval = "2s"
event_buffer_bytes = "64MiB"
[accounting]
flush_interval = "500ms"
gateway_id = "gw-1"
[api]
listen = "0.0.0.0:9000"
)",
                          "test.toml");
    CHECK(c.database.url == "postgresql:///ctquota?host=/tmp/pg");
    CHECK(c.conntrack.poll_interval == 2s);
    CHECK(c.conntrack.event_buffer_bytes == 64ull << 20);
    CHECK(c.accounting.flush_interval == 500ms);
    CHECK(c.accounting.gateway_id == "gw-1");
    CHECK(c.api.listen == "0.0.0.0:9000");
}

TEST_CASE("defaults apply to keys left out") {
    auto c = parse_config("[database]\nurl = \"dbname=x\"\n", "t.toml");
    CHECK(c.conntrack.poll_interval == 10s);
    CHECK(c.accounting.flush_interval == 1s);
    CHECK_FALSE(c.accounting.gateway_id.empty());
}

TEST_CASE("bad configs name the file, the line and the key") {
    struct Row {
        const char* text;
        const char* expected;  // substring of the error
    };
    const Row rows[] = {
        {"[database]\nurl = \"x\"\n[conntrack]\npoll_interval = \"ten\"\n",
         "t.toml:4: conntrack.poll_interval: expected a positive duration"},
        {"[database]\nurl = \"x\"\n[conntrack]\npoll_interval = 10\n",
         "t.toml:4: conntrack.poll_interval"},
        {"[database]\nurl = \"x\"\npassword = \"y\"\n", "t.toml:3: database.password: unknown key"},
        {"[database]\nurl = \"x\"\n[nosuch]\na = 1\n", "nosuch: unknown section"},
        {"[database]\nurl = \"x\"\n[accounting]\nflush_interval = \"0s\"\n",
         "t.toml:4: accounting.flush_interval"},
        {"[database]\nurl = \"x\"\n[conntrack]\nevent_buffer_bytes = \"lots\"\n",
         "t.toml:4: conntrack.event_buffer_bytes"},
        {"[conntrack]\npoll_interval = \"1s\"\n", "database.url: missing"},
        {"[database\nurl = \"x\"\n", "t.toml:1"},
        {"[database]\nurl = \"x\"\n[log]\nlevel = \"loud\"\n", "log.level"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        try {
            parse_config(r.text, "t.toml");
            FAIL("accepted a bad config");
        } catch (const ConfigError& e) {
            CHECK(std::string(e.what()).find(r.expected) != std::string::npos);
            CAPTURE(e.what());
        }
    }
}

TEST_CASE("a missing file is a clear error") {
    CHECK_THROWS_WITH_AS(load_config("/nonexistent/ctquotad.toml"),
                         doctest::Contains("cannot read"), ConfigError);
}
