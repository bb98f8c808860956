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
        {"[database]\nurl = \"x\"\n[api]\nlisten = \"8460\"\n",
         "t.toml:4: api.listen: expected host:port"},
        {"[database]\nurl = \"x\"\n[api]\nlisten = \"127.0.0.1:99999\"\n", "t.toml:4: api.listen"},
        {"[database]\nurl = \"x\"\n[api]\nlisten = 8460\n",
         "t.toml:4: api.listen: expected a string"},
        {"[database]\nurl = \"x\"\n[api]\nenabled = \"yes\"\n", "t.toml:4: api.enabled"},
        {"[database]\nurl = \"x\"\n[api]\nmax_body_bytes = \"1TiB\"\n",
         "t.toml:4: api.max_body_bytes"},
        {"[database]\nurl = \"x\"\n[api]\nmax_body_bytes = \"1GiB\"\n",
         "t.toml:4: api.max_body_bytes: at most"},
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

TEST_CASE("the api section: defaults and parsed values") {
    auto d = parse_config("[database]\nurl = \"x\"\n", "t.toml");
    CHECK(d.api.enabled);
    CHECK(d.api.host == "127.0.0.1");
    CHECK(d.api.port == 8460);
    CHECK(d.api.max_body_bytes == 1u << 20);
    auto c = parse_config(
        "[database]\nurl = \"x\"\n[api]\nenabled = false\nlisten = \"[::1]:9000\"\n"
        "max_body_bytes = \"64KiB\"\n",
        "t.toml");
    CHECK_FALSE(c.api.enabled);
    CHECK(c.api.host == "::1");
    CHECK(c.api.port == 9000);
    CHECK(c.api.max_body_bytes == 64u << 10);
}

TEST_CASE("listen addresses") {
    struct Row {
        const char* text;
        const char* host;  // nullptr = rejected
        unsigned port;
    };
    const Row rows[] = {
        {"127.0.0.1:8460", "127.0.0.1", 8460},
        {"0.0.0.0:1", "0.0.0.0", 1},
        {"[::]:65535", "::", 65535},
        {"[2001:db8::1]:80", "2001:db8::1", 80},
        {"localhost:8460", "localhost", 8460},
        {"gw-1.example.net:80", "gw-1.example.net", 80},
        {"127.0.0.1", nullptr, 0},
        {"127.0.0.1:0", nullptr, 0},
        {"127.0.0.1:65536", nullptr, 0},
        {"127.0.0.1:-1", nullptr, 0},
        {"127.0.0.1:80x", nullptr, 0},
        {":8460", nullptr, 0},
        {"::1:8460", nullptr, 0},
        {"[::1]", nullptr, 0},
        {"[nope]:80", nullptr, 0},
        {"[127.0.0.1]:80", nullptr, 0},
        {"300.1.2.3:80", nullptr, 0},
        {"a b:80", nullptr, 0},
        {"-x:80", nullptr, 0},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        const auto parsed = parse_listen_address(r.text);
        if (r.host == nullptr) {
            CHECK_FALSE(parsed.has_value());
        } else {
            REQUIRE(parsed.has_value());
            CHECK(parsed->host == r.host);
            CHECK(parsed->port == r.port);
        }
    }
}

TEST_CASE("a missing file is a clear error") {
    CHECK_THROWS_WITH_AS(load_config("/nonexistent/ctquotad.toml"),
                         doctest::Contains("cannot read"), ConfigError);
}
