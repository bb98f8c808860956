#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

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
dump_defer_events_per_s = 5000
dump_defer_max = "30s"
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
    CHECK(c.conntrack.dump_defer_events_per_s == 5000);
    CHECK(c.conntrack.dump_defer_max == 30s);
    CHECK(c.accounting.flush_interval == 500ms);
    CHECK(c.accounting.gateway_id == "gw-1");
    CHECK(c.api.listen == "0.0.0.0:9000");
}

TEST_CASE("defaults apply to keys left out") {
    auto c = parse_config("[database]\nurl = \"dbname=x\"\n", "t.toml");
    CHECK(c.journal.dir.empty());  // $STATE_DIRECTORY/journal under systemd, else none
    CHECK(c.journal.segment_bytes == 4ull << 20);
    CHECK(c.journal.spill_after_bytes == 64ull << 20);
    CHECK(c.conntrack.poll_interval == 10s);
    CHECK(c.conntrack.dump_defer_events_per_s == 20000);
    CHECK(c.conntrack.dump_defer_max == 10s);
    CHECK(c.accounting.flush_interval == 1s);
    CHECK_FALSE(c.accounting.gateway_id.empty());
    CHECK(c.policies.lease_ttl == 30s);
    CHECK(c.policies.lease_slice_time == 20s);
    CHECK(c.policies.lease_min_bytes == 64u * 1024);
    const auto leases = parse_config(
        "[database]\nurl = \"x\"\n[policies]\nlease_ttl = \"6s\"\nlease_slice_time = \"2s\"\n"
        "lease_min_bytes = \"128KiB\"\n",
        "t.toml");
    CHECK(leases.policies.lease_ttl == 6s);
    CHECK(leases.policies.lease_slice_time == 2s);
    CHECK(leases.policies.lease_min_bytes == 128u * 1024);
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
        {"[database]\nurl = \"x\"\n[conntrack]\ndump_defer_events_per_s = -1\n",
         "t.toml:4: conntrack.dump_defer_events_per_s: expected events a second"},
        {"[database]\nurl = \"x\"\n[conntrack]\ndump_defer_max = \"0s\"\n",
         "t.toml:4: conntrack.dump_defer_max"},
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
        {"[database]\nurl = \"x\"\n[api]\nauth_failure_log_interval = \"0s\"\n",
         "t.toml:4: api.auth_failure_log_interval"},
        {"[database]\nurl = \"x\"\n[api]\nmax_connections = 0\n",
         "t.toml:4: api.max_connections: expected an integer in 1..1000000"},
        {"[database]\nurl = \"x\"\n[api]\nmax_connections_per_address = \"many\"\n",
         "t.toml:4: api.max_connections_per_address"},
        {"[database]\nurl = \"x\"\n[api]\nmax_header_bytes = \"100MiB\"\n",
         "t.toml:4: api.max_header_bytes: expected a size in 1KiB..1MiB"},
        {"[database]\nurl = \"x\"\n[api]\nmax_headers = 3\n",
         "t.toml:4: api.max_headers: expected an integer in 8..10000"},
        {"[database]\nurl = \"x\"\n[api]\nrequest_timeout = \"0s\"\n",
         "t.toml:4: api.request_timeout"},
        {"[database]\nurl = \"x\"\n[api]\nwrite_timeout = 10\n", "t.toml:4: api.write_timeout"},
        {"[database]\nurl = \"x\"\n[api]\nmax_queued_requests = -1\n",
         "t.toml:4: api.max_queued_requests"},
        {"[database]\nurl = \"x\"\n[subscribers]\npools = \"100.64.0.0/10\"\n",
         "t.toml:4: subscribers.pools: expected an array of prefixes"},
        {"[database]\nurl = \"x\"\n[subscribers]\npools = "
         "[\n\"100.64.0.0/10\",\n\"100.64.0.0/99\"]\n",
         "t.toml:6: subscribers.pools: expected an IPv4 or IPv6 prefix, got \"100.64.0.0/99\""},
        {"[database]\nurl = \"x\"\n[subscribers]\nmin_ipv4_prefix_length = 0\n",
         "t.toml:4: subscribers.min_ipv4_prefix_length: expected a prefix length in 8..32"},
        {"[database]\nurl = \"x\"\n[subscribers]\nmin_ipv6_prefix_length = 129\n",
         "t.toml:4: subscribers.min_ipv6_prefix_length: expected a prefix length in 32..128"},
        {"[database]\nurl = \"x\"\n[subscribers]\nmin_ipv6_prefix_length = \"/48\"\n",
         "t.toml:4: subscribers.min_ipv6_prefix_length"},
        {"[database]\nurl = \"x\"\n[journal]\nsegment_bytes = \"4KiB\"\n",
         "t.toml:4: journal.segment_bytes: expected a size in \"64KiB\"..\"1GiB\""},
        {"[database]\nurl = \"x\"\n[journal]\nspill_after_bytes = 1000\n",
         "t.toml:4: journal.spill_after_bytes: expected a size of at least \"64KiB\""},
        {"[database]\nurl = \"x\"\n[journal]\ndir = 5\n", "t.toml:4: journal.dir"},
        {"[database]\nurl = \"x\"\n[policies]\nlease_min_bytes = \"1KiB\"\n",
         "t.toml:4: policies.lease_min_bytes: expected a size in \"16KiB\"..\"1GiB\""},
        {"[database]\nurl = \"x\"\n[policies]\nlease_ttl = \"100ms\"\n",
         "t.toml:4: policies.lease_ttl: expected at least \"1s\""},
        {"[database]\nurl = \"x\"\n[accounting]\ngateway_id = \"a\\nb\"\n",
         "accounting.gateway_id: at most 255 bytes, no line breaks"},
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

TEST_CASE("the subscribers section: pools and minimum prefix lengths") {
    const auto defaults = parse_config("[database]\nurl = \"x\"\n", "t.toml");
    CHECK(defaults.subscribers.pools.empty());
    CHECK(defaults.subscribers.min_ipv4_length == 24);
    CHECK(defaults.subscribers.min_ipv6_length == 48);
    CHECK(defaults.api.auth_failure_log_interval == 1min);
    const auto c = parse_config(R"([database]
url = "x"
[subscribers]
pools = ["100.64.0.0/10", "2001:db8::/32"]
min_ipv4_prefix_length = 28
min_ipv6_prefix_length = 56
[api]
auth_failure_log_interval = "5s"
)",
                                "t.toml");
    REQUIRE(c.subscribers.pools.size() == 2);
    CHECK(c.subscribers.pools[1].to_string() == "2001:db8::/32");
    CHECK(c.subscribers.min_ipv4_length == 28);
    CHECK(c.subscribers.min_ipv6_length == 56);
    CHECK(c.api.auth_failure_log_interval == 5s);
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

namespace {

// A file under the temp directory holding `text`, removed with the object.
struct TempFile {
    std::filesystem::path path;
    explicit TempFile(const std::string& name, const std::string& text)
        : path(std::filesystem::temp_directory_path() /
               ("ctquota-config-test-" + std::to_string(::getpid()) + "-" + name)) {
        std::ofstream(path) << text;
    }
    ~TempFile() { std::filesystem::remove(path); }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
};

std::string config_error(const std::string& text) {
    try {
        parse_config(text, "t.toml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(accepted)";
}

}  // namespace

TEST_CASE("api TLS: both files or neither, and readable") {
    const TempFile cert("cert.pem", "CERT"), key("key.pem", "KEY");
    const std::string db = "[database]\nurl = \"x\"\n[api]\n";
    const auto c = parse_config(
        db + "tls_cert = \"" + cert.path.string() + "\"\ntls_key = \"" + key.path.string() + "\"\n",
        "t.toml");
    CHECK(c.api.tls_cert == cert.path);
    CHECK(c.api.tls_key == key.path);
    CHECK(parse_config(db, "t.toml").api.tls_cert.empty());
    CHECK_MESSAGE(config_error(db + "tls_cert = \"" + cert.path.string() + "\"\n")
                          .find("api.tls_key: missing") != std::string::npos,
                  "only the certificate");
    CHECK(config_error(db + "tls_key = \"" + key.path.string() + "\"\n").find("api.tls_cert") !=
          std::string::npos);
    CHECK(config_error(db + "tls_cert = \"/nonexistent/c.pem\"\ntls_key = \"" + key.path.string() +
                       "\"\n")
              .find("t.toml:4: api.tls_cert: cannot read \"/nonexistent/c.pem\"") !=
          std::string::npos);
    CHECK(config_error(db + "tls_cert = \"/\"\ntls_key = \"/\"\n").find("api.tls_cert") !=
          std::string::npos);
}

TEST_CASE("the webhooks section") {
    const std::string db = "[database]\nurl = \"x\"\n[webhooks]\n";
    const auto d = parse_config("[database]\nurl = \"x\"\n", "t.toml");
    CHECK(d.webhooks.urls.empty());
    CHECK(d.webhooks.timeout == 5s);
    CHECK(d.webhooks.max_backoff == 5min);

    const auto c = parse_config(db + "urls = [\"https://b.example.net/hook\", "
                                     "\"http://127.0.0.1:9000/x?y=1\"]\nsecret = \"s3cret\"\n"
                                     "timeout = \"2s\"\nmax_backoff = \"30s\"\n",
                                "t.toml");
    CHECK(c.webhooks.urls ==
          std::vector<std::string>{"https://b.example.net/hook", "http://127.0.0.1:9000/x?y=1"});
    CHECK(c.webhooks.secret == "s3cret");
    CHECK(c.webhooks.timeout == 2s);
    CHECK(c.webhooks.max_backoff == 30s);

    const TempFile secret("secret", "from-file\n");
    const auto f = parse_config(
        db + "urls = [\"http://h/\"]\nsecret_file = \"" + secret.path.string() + "\"\n", "t.toml");
    CHECK(f.webhooks.secret == "from-file");  // the trailing newline is not part of it

    struct Row {
        std::string text;
        const char* expected;
    };
    const Row rows[] = {
        {"urls = \"http://h/\"\nsecret = \"s\"\n", "t.toml:4: webhooks.urls: expected an array"},
        {"urls = [\"ftp://h/\"]\nsecret = \"s\"\n", "t.toml:4: webhooks.urls: expected an http"},
        {"urls = [\"http://\"]\nsecret = \"s\"\n", "webhooks.urls: expected an http"},
        {"urls = [\"http://a b/\"]\nsecret = \"s\"\n", "webhooks.urls: expected an http"},
        {"urls = [1]\nsecret = \"s\"\n", "webhooks.urls: expected a string"},
        {"urls = [\"http://h/\"]\n", "webhooks.secret: missing"},
        {"urls = [\"http://h/\"]\nsecret_file = \"/nonexistent/s\"\n",
         "t.toml:5: webhooks.secret_file: cannot read"},
        {"secret = \"s\"\nsecret_file = \"" + secret.path.string() + "\"\n",
         "t.toml:5: webhooks.secret_file: set either secret or secret_file"},
        {"urls = [\"http://h/\"]\nsecret = \"s\"\ntimeout = \"5m\"\n", "webhooks.timeout: at most"},
        {"urls = [\"http://h/\"]\nsecret = \"s\"\nmax_backoff = \"10ms\"\n",
         "webhooks.max_backoff: at least"},
        {"retries = 3\n", "t.toml:4: webhooks.retries: unknown key"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        const auto error = config_error(db + r.text);
        CAPTURE(error);
        CHECK(error.find(r.expected) != std::string::npos);
    }
}

TEST_CASE("[enforce] parses, defaults and rejects bad values") {
    auto d = parse_config("[database]\nurl = \"dbname=x\"\n", "t.toml");
    CHECK(d.enforce.enabled);
    CHECK(d.enforce.table == "ctquota");
    CHECK(d.enforce.subscriber_interface.empty());
    CHECK(d.enforce.delete_conntrack_on_block);
    CHECK(d.enforce.arm_quota_below_bytes == 0);
    CHECK(d.enforce.forward_priority == -5);

    auto c = parse_config(R"(
[database]
url = "dbname=x"
[enforce]
enabled = false
table = "ctq_gw1"
subscriber_interface = "eth1.100"
delete_conntrack_on_block = false
arm_quota_below_bytes = "1GiB"
forward_priority = -10
no_offload_mark = 0x00800000
direct_queue_packets = 5000
shaper_interface = "ctqshape1"
leaf_queue_packets = 64
)",
                          "e.toml");
    CHECK_FALSE(c.enforce.enabled);
    CHECK(c.enforce.table == "ctq_gw1");
    CHECK(c.enforce.subscriber_interface == "eth1.100");
    CHECK_FALSE(c.enforce.delete_conntrack_on_block);
    CHECK(c.enforce.arm_quota_below_bytes == 1ull << 30);
    CHECK(c.enforce.forward_priority == -10);
    CHECK(c.enforce.no_offload_mark == 0x00800000u);
    CHECK(c.enforce.direct_queue_packets == 5000u);
    CHECK(d.enforce.direct_queue_packets == 1000u);
    CHECK(c.enforce.shaper_interface == "ctqshape1");
    CHECK(d.enforce.shaper_interface == "ctqshaper");
    CHECK(c.enforce.leaf_queue_packets == 64u);
    CHECK(d.enforce.leaf_queue_packets == 16u);
    CHECK(parse_config("[database]\nurl = \"x\"\n[enforce]\narm_quota_below_bytes = 0\n", "z.toml")
              .enforce.arm_quota_below_bytes == 0);

    struct Row {
        const char* text;
        const char* expected;
    };
    const Row rows[] = {
        {"[enforce]\ntable = \"\"\n", "b.toml:2: enforce.table: expected a non-empty name"},
        {"[enforce]\ntable = \"bad name\"\n", "enforce.table"},
        {"[enforce]\nsubscriber_interface = \"averyveryverylongname\"\n",
         "enforce.subscriber_interface: expected name of at most 15"},
        {"[enforce]\nsubscriber_interface = \"eth0;rm\"\n", "enforce.subscriber_interface"},
        {"[enforce]\narm_quota_below_bytes = \"lots\"\n", "enforce.arm_quota_below_bytes"},
        {"[enforce]\nforward_priority = 1000\n", "enforce.forward_priority: expected an integer"},
        {"[enforce]\nno_offload_mark = 0x100000000\n",
         "enforce.no_offload_mark: expected a 32-bit"},
        {"[enforce]\nno_offload_mark = \"high\"\n", "enforce.no_offload_mark"},
        {"[enforce]\ndirect_queue_packets = 1\n", "enforce.direct_queue_packets: expected"},
        {"[enforce]\nshaper_interface = \"\"\n",
         "enforce.shaper_interface: expected a non-empty name"},
        {"[enforce]\nshaper_interface = \"ifb 0\"\n", "enforce.shaper_interface"},
        {"[enforce]\nleaf_queue_packets = 0\n", "enforce.leaf_queue_packets: expected"},
        {"[enforce]\nenabled = \"yes\"\n", "enforce.enabled: expected true or false"},
        {"[enforce]\nflush_everything = true\n", "enforce.flush_everything"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.text);
        try {
            parse_config(row.text, "b.toml");
            FAIL("accepted");
        } catch (const ConfigError& e) {
            CHECK(std::string(e.what()).find(row.expected) != std::string::npos);
        }
    }
}
