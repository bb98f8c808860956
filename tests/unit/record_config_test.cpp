// [records], [flowlog], [ipfix]: parsed values, defaults, and errors naming
// the file, line and key.
#include <doctest/doctest.h>

#include "app/config.hpp"

using namespace ctquota;
using namespace ctquota::app;
using namespace std::chrono_literals;

TEST_CASE("flow record sections parse into typed values") {
    const auto c = parse_config(R"(
[database]
url = "dbname=x"
[records]
interim_interval = "10m"
[flowlog]
enabled = true
retention = "180d"
only_translated = true
subscribers = ["cust-1", "cust-2"]
queue_records = 5000
batch_records = 100
flush_interval = "250ms"
[ipfix]
collectors = ["192.0.2.10:4739", "[2001:db8::10]:4740"]
transport = "tcp"
observation_domain = 4294967295
layout = "per-direction"
template_refresh = "30s"
template_every = 20
max_message_bytes = 9000
queue_records = 1000
)",
                                "t.toml");
    CHECK(c.records.interim_interval == 10min);
    CHECK(c.flowlog.enabled);
    CHECK(c.flowlog.retention == std::chrono::hours(24 * 180));
    CHECK(c.flowlog.only_translated);
    CHECK(c.flowlog.subscribers == std::vector<std::string>{"cust-1", "cust-2"});
    CHECK(c.flowlog.queue_records == 5000);
    CHECK(c.flowlog.batch_records == 100);
    CHECK(c.flowlog.flush_interval == 250ms);
    REQUIRE(c.ipfix.collectors.size() == 2);
    CHECK(c.ipfix.collectors[0].address == "192.0.2.10");
    CHECK(c.ipfix.collectors[0].port == 4739);
    CHECK(c.ipfix.collectors[1].address == "2001:db8::10");
    CHECK(c.ipfix.collectors[1].text == "[2001:db8::10]:4740");
    CHECK(c.ipfix.transport == sinks::IpfixTransport::Tcp);
    CHECK(c.ipfix.observation_domain == 4294967295u);
    CHECK(c.ipfix.layout == sinks::IpfixLayoutChoice::PerDirection);
    CHECK(c.ipfix.template_refresh == 30s);
    CHECK(c.ipfix.template_every == 20);
    CHECK(c.ipfix.max_message_bytes == 9000);
    CHECK(c.ipfix.queue_records == 1000);
}

TEST_CASE("flow records are off unless asked for") {
    const auto c = parse_config("[database]\nurl = \"x\"\n", "t.toml");
    CHECK_FALSE(c.flowlog.enabled);
    CHECK(c.ipfix.collectors.empty());
    CHECK(c.records.interim_interval == 5min);
    CHECK(c.ipfix.transport == sinks::IpfixTransport::Udp);
    CHECK(c.ipfix.layout == sinks::IpfixLayoutChoice::Biflow);
    CHECK(c.flowlog.retention == std::chrono::hours(24 * 180));
}

TEST_CASE("bad flow record settings name the file, the line and the key") {
    struct Row {
        const char* text;
        const char* expected;
    };
    const Row rows[] = {
        {"[records]\ninterim_interval = \"500ms\"\n",
         "t.toml:2: records.interim_interval: expected at least \"1s\""},
        {"[flowlog]\nretention = \"12h\"\n",
         "t.toml:2: flowlog.retention: expected at least \"1d\""},
        {"[flowlog]\nretention = \"forever\"\n",
         "t.toml:2: flowlog.retention: expected a positive duration"},
        {"[flowlog]\nenabled = 1\n", "t.toml:2: flowlog.enabled"},
        {"[flowlog]\nsubscribers = \"cust-1\"\n",
         "t.toml:2: flowlog.subscribers: expected an array"},
        {"[flowlog]\nsubscribers = [\"\"]\n",
         "t.toml:2: flowlog.subscribers: expected a subscriber id"},
        {"[flowlog]\nqueue_records = 0\n",
         "t.toml:2: flowlog.queue_records: expected a number of records"},
        {"[flowlog]\nsurprise = 1\n", "t.toml:2: flowlog.surprise: unknown key"},
        {"[ipfix]\ncollectors = \"192.0.2.10:4739\"\n",
         "t.toml:2: ipfix.collectors: expected an array"},
        {"[ipfix]\ncollectors = [\"collector.example:4739\"]\n",
         "t.toml:2: ipfix.collectors: expected an IP address and port"},
        {"[ipfix]\ncollectors = [\"192.0.2.10\"]\n", "t.toml:2: ipfix.collectors"},
        {"[ipfix]\ncollectors = [\"2001:db8::1:4739\"]\n", "t.toml:2: ipfix.collectors"},
        {"[ipfix]\ntransport = \"sctp\"\n",
         "t.toml:2: ipfix.transport: expected \"udp\" or \"tcp\""},
        {"[ipfix]\nlayout = \"uni\"\n",
         "t.toml:2: ipfix.layout: expected \"biflow\" or \"per-direction\""},
        {"[ipfix]\nobservation_domain = -1\n", "t.toml:2: ipfix.observation_domain"},
        {"[ipfix]\nmax_message_bytes = 576\n",
         "t.toml:2: ipfix.max_message_bytes: expected a number of bytes in 600..65535"},
        {"[ipfix]\ntemplate_every = 0\n", "t.toml:2: ipfix.template_every"},
        {"[ipfix]\ntemplate_refresh = \"100ms\"\n", "t.toml:2: ipfix.template_refresh"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        try {
            parse_config(std::string("[database]\nurl = \"x\"\n") + r.text, "t.toml");
            FAIL("accepted a bad config");
        } catch (const ConfigError& e) {
            CAPTURE(e.what());
            // The rows count lines from their own text; the database section adds two.
            std::string expected = r.expected;
            if (expected.starts_with("t.toml:")) {
                const auto colon = expected.find(':', 7);
                expected =
                    "t.toml:" + std::to_string(std::stoi(expected.substr(7, colon - 7)) + 2) +
                    expected.substr(colon);
            }
            CHECK_MESSAGE(std::string(e.what()).find(expected) != std::string::npos,
                          std::string(e.what()));
        }
    }
}
