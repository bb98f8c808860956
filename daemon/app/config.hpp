#pragma once
// One typed Config with defaults, validated once at load. Every error names
// the file, the line and the key. Passed around by const&.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/binding_rules.hpp"
#include "drops/drop_config.hpp"
#include "enforce/enforce_config.hpp"
#include "policy/policy_config.hpp"
#include "runtime/runtime_config.hpp"
#include "sinks/sinks_config.hpp"

namespace ctquota::app {

using namespace std::chrono_literals;

class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct Config {
    std::string source = "<defaults>";

    struct Database {
        std::string url;                   // required: libpq connection string or URI
        std::filesystem::path schema_dir;  // default: the installed schema/
    } database;

    runtime::ConntrackConfig conntrack;
    runtime::AccountingConfig accounting;
    runtime::JournalConfig journal;

    struct Api {
        bool enabled = true;
        std::string listen = "127.0.0.1:8460";  // as written; host and port below
        std::string host = "127.0.0.1";         // IPv6 without brackets
        std::uint16_t port = 8460;
        std::uint64_t max_body_bytes = 1ull << 20;
        // HTTPS when both are set (PEM files, read at start-up); plain HTTP when neither.
        std::filesystem::path tls_cert;
        std::filesystem::path tls_key;
        std::filesystem::path web_dir;  // the web page; default: the source/installed web/
        // 401s: the first per client address in each interval is logged, the rest summed up.
        std::chrono::nanoseconds auth_failure_log_interval = 1min;
        // Bounds against clients that never authenticate (api/http_server.hpp).
        std::size_t max_connections = 512;
        std::size_t max_connections_per_address = 32;
        std::uint64_t max_header_bytes = 16 * 1024;  // request line + headers
        std::size_t max_headers = 100;
        std::chrono::nanoseconds request_timeout = 10s;  // a whole request, once awaited
        std::chrono::nanoseconds write_timeout = 10s;    // a whole response
        std::size_t max_queued_requests = 256;           // waiting for a handler thread
    } api;

    struct Webhooks {
        std::vector<std::string> urls;      // http:// or https://; empty: no webhooks
        std::string secret;                 // HMAC-SHA256 key (from secret or secret_file)
        std::filesystem::path secret_file;  // where secret was read from, if it was
        std::chrono::nanoseconds timeout = 5s;
        std::chrono::nanoseconds max_backoff = 5min;
    } webhooks;

    // Which prefixes may be bound to a subscriber (API and CLI alike).
    core::BindingRules subscribers;

    policy::PoliciesConfig policies;

    // The clock offset (runtime::OffsetClock): a file holding seconds (may be
    // fractional) added to the daemon's clock, re-read when it changes. For
    // staging gateways and acceptance tests of billing: reach a cycle's end,
    // a top-up's expiry or an hour boundary without waiting for it.
    struct Clock {
        std::filesystem::path offset_file;
    } clock;

    // Kernel enforcement (enforce::Enforcer): nftables table + tc HTB.
    struct Enforce : ::ctquota::enforce::EnforceConfig {
        bool enabled = true;  // false: states are evaluated and recorded, not enforced
    } enforce;

    struct Log {
        std::string level = "info";
    } log;

    // Drops after conntrack counted (drops::DropMap): not billed.
    drops::DropConfig drops;

    // Flow records (daemon/sinks/): the stage, the PostgreSQL flow log, IPFIX export.
    sinks::RecordsConfig records;
    sinks::FlowLogConfig flowlog;
    sinks::IpfixConfig ipfix;
};

struct ListenAddress {
    std::string host;  // IPv4 literal, IPv6 literal (no brackets) or host name
    std::uint16_t port = 0;
};

// "127.0.0.1:8460", "[::1]:8460", "localhost:8460"; nullopt when malformed.
std::optional<ListenAddress> parse_listen_address(std::string_view text);

Config load_config(const std::filesystem::path& file);
Config parse_config(std::string_view text, const std::string& source_name);

}  // namespace ctquota::app
