#include "app/config.hpp"

#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "app/config_values.hpp"
#include "core/address.hpp"
#include "core/duration.hpp"

namespace ctquota::app {
namespace {

using namespace config_values;

void set_listen(Config& c, const std::string& src, const toml::node& n, const std::string& key) {
    const auto text = as_string(src, n, key);
    const auto parsed = parse_listen_address(text);
    if (!parsed) {
        fail(src, n, key,
             "expected host:port like \"127.0.0.1:8460\", \"[::1]:8460\" or \"0.0.0.0:8460\" "
             "(port 1-65535), got \"" +
                 text + "\"");
    }
    c.api.listen = text;
    c.api.host = parsed->host;
    c.api.port = parsed->port;
}

void set_secret(Config& c, const std::string& src, const toml::node& n, const std::string& key) {
    if (!c.webhooks.secret_file.empty()) {
        fail(src, n, key, "set either secret or secret_file, not both");
    }
    c.webhooks.secret = as_string(src, n, key);
}

void set_secret_file(Config& c, const std::string& src, const toml::node& n,
                     const std::string& key) {
    if (!c.webhooks.secret.empty()) {
        fail(src, n, key, "set either secret or secret_file, not both");
    }
    c.webhooks.secret_file = as_string(src, n, key);
    c.webhooks.secret = trim_line_end(readable_file(src, n, key));
    if (c.webhooks.secret.empty()) {
        fail(src, n, key, "the file is empty");
    }
}

using Setter =
    std::function<void(Config&, const std::string&, const toml::node&, const std::string&)>;
using Keys = std::map<std::string, Setter>;

// A key that is one member of one section, read by one typed reader.
template <auto Section, auto Member, auto Read>
void assign(Config& c, const std::string& src, const toml::node& n, const std::string& key) {
    (c.*Section).*Member = Read(src, n, key);
}

std::string as_table_name(const std::string& src, const toml::node& n, const std::string& key) {
    return as_enforce_name(src, n, key, 64);
}

std::string as_interface_name(const std::string& src, const toml::node& n, const std::string& key) {
    return as_enforce_name(src, n, key, 15, true);
}

std::string as_device_name(const std::string& src, const toml::node& n, const std::string& key) {
    return as_enforce_name(src, n, key, 15, false);
}

// 0 turns arming off; anything else is a size.
std::uint64_t as_arm_below(const std::string& src, const toml::node& n, const std::string& key) {
    return n.is_integer() && n.as_integer()->get() == 0 ? 0 : as_bytes(src, n, key);
}

// An integer in [Lowest, Highest]; `expected` says what in the error.
template <std::int64_t Lowest, std::int64_t Highest, typename T>
T as_int_in(const std::string& src, const toml::node& n, const std::string& key,
            const std::string& expected) {
    if (!n.is_integer() || n.as_integer()->get() < Lowest || n.as_integer()->get() > Highest) {
        fail(src, n, key, "expected " + expected);
    }
    return static_cast<T>(n.as_integer()->get());
}

std::uint64_t as_event_rate(const std::string& src, const toml::node& n, const std::string& key) {
    return as_int_in<0, 100'000'000, std::uint64_t>(src, n, key,
                                                    "events a second in 0..100000000 (0 = off)");
}

int as_hook_priority(const std::string& src, const toml::node& n, const std::string& key) {
    return as_int_in<-400, 400, int>(src, n, key, "an integer in -400..400 (filter = 0)");
}

// A 32-bit meta mark mask; 0 = off.
std::uint32_t as_mark(const std::string& src, const toml::node& n, const std::string& key) {
    return as_int_in<0, 0xFFFFFFFFll, std::uint32_t>(
        src, n, key, "a 32-bit mark mask like 0x00800000 (0 = off)");
}

std::uint32_t as_queue_packets(const std::string& src, const toml::node& n,
                               const std::string& key) {
    return as_int_in<2, 100000, std::uint32_t>(src, n, key, "a number of packets in 2..100000");
}

// A size in bytes within [Min, Max] ("64KiB" and the like).
template <std::uint64_t Min, std::uint64_t Max>
std::uint64_t as_bytes_in(const std::string& src, const toml::node& n, const std::string& key,
                          const char* expected) {
    const auto bytes = as_bytes(src, n, key);
    if (bytes < Min || bytes > Max) {
        fail(src, n, key, std::string("expected ") + expected);
    }
    return bytes;
}

std::uint64_t as_segment_bytes(const std::string& src, const toml::node& n,
                               const std::string& key) {
    return as_bytes_in<64ull << 10, 1ull << 30>(src, n, key, "a size in \"64KiB\"..\"1GiB\"");
}

// Below a few packets a slice would be renewed for every one; past 1 GiB the
// bound on billing past the allowance (gateways x slice) means nothing.
std::uint64_t as_lease_bytes(const std::string& src, const toml::node& n, const std::string& key) {
    return as_bytes_in<16ull << 10, 1ull << 30>(src, n, key, "a size in \"16KiB\"..\"1GiB\"");
}

std::uint64_t as_spill_bytes(const std::string& src, const toml::node& n, const std::string& key) {
    return as_bytes_in<64ull << 10, UINT64_MAX>(src, n, key, "a size of at least \"64KiB\"");
}

// Subscriber pools: CIDR strings like "100.64.0.0/10".
std::vector<core::Prefix> as_pools(const std::string& src, const toml::node& n,
                                   const std::string& key) {
    if (!n.is_array()) {
        fail(src, n, key, "expected an array of prefixes like [\"100.64.0.0/10\"]");
    }
    std::vector<core::Prefix> pools;
    for (const auto& item : *n.as_array()) {
        const auto text = as_string(src, item, key);
        const auto pool = core::Prefix::parse(text);
        if (!pool) {
            fail(src, item, key, "expected an IPv4 or IPv6 prefix, got \"" + text + "\"");
        }
        pools.push_back(*pool);
    }
    return pools;
}

// A minimum binding length within what the subscriber index serves
// (IPv4 /8../32, IPv6 /32../128).
template <int Lowest, int Highest>
int as_min_length(const std::string& src, const toml::node& n, const std::string& key) {
    return as_int_in<Lowest, Highest, int>(
        src, n, key,
        "a prefix length in " + std::to_string(Lowest) + ".." + std::to_string(Highest));
}

Keys subscriber_keys() {
    using R = core::BindingRules;
    constexpr auto section = &Config::subscribers;
    return {
        {"pools", assign<section, &R::pools, as_pools>},
        {"min_ipv4_prefix_length", assign<section, &R::min_ipv4_length, as_min_length<8, 32>>},
        {"min_ipv6_prefix_length", assign<section, &R::min_ipv6_length, as_min_length<32, 128>>}};
}

Keys database_keys() {
    using D = Config::Database;
    return {{"url", assign<&Config::database, &D::url, as_string>},
            {"schema_dir", assign<&Config::database, &D::schema_dir, as_string>}};
}

Keys conntrack_keys() {
    using C = runtime::ConntrackConfig;
    constexpr auto section = &Config::conntrack;
    return {
        {"poll_interval", assign<section, &C::poll_interval, as_duration>},
        {"event_buffer_bytes", assign<section, &C::event_buffer_bytes, as_bytes>},
        {"max_event_buffer_bytes", assign<section, &C::max_event_buffer_bytes, as_bytes>},
        {"queue_samples", assign<section, &C::queue_samples, as_bytes>},
        {"reliable_events", assign<section, &C::reliable_events, as_bool>},
        {"enable_accounting_sysctl", assign<section, &C::enable_accounting_sysctl, as_bool>},
        {"dump_defer_events_per_s", assign<section, &C::dump_defer_events_per_s, as_event_rate>},
        {"dump_defer_max", assign<section, &C::dump_defer_max, as_duration>},
    };
}

Keys accounting_keys() {
    using A = runtime::AccountingConfig;
    constexpr auto section = &Config::accounting;
    return {{"flush_interval", assign<section, &A::flush_interval, as_duration>},
            {"gateway_id", assign<section, &A::gateway_id, as_string>},
            {"retry_max", assign<section, &A::retry_max, as_duration>}};
}

std::size_t as_connection_count(const std::string& src, const toml::node& n,
                                const std::string& key) {
    return as_int_in<1, 1000000, std::size_t>(src, n, key, "an integer in 1..1000000");
}

std::size_t as_header_count(const std::string& src, const toml::node& n, const std::string& key) {
    return as_int_in<8, 10000, std::size_t>(src, n, key, "an integer in 8..10000");
}

// Request line + headers: 1 KiB (a token and a path fit) .. 1 MiB.
std::uint64_t as_header_limit(const std::string& src, const toml::node& n, const std::string& key) {
    const auto bytes = as_bytes(src, n, key);
    if (bytes < 1024 || bytes > (1u << 20)) {
        fail(src, n, key, "expected a size in 1KiB..1MiB");
    }
    return bytes;
}

Keys api_keys() {
    using A = Config::Api;
    constexpr auto section = &Config::api;
    return {
        {"enabled", assign<section, &A::enabled, as_bool>},
        {"listen", set_listen},
        {"max_body_bytes", assign<section, &A::max_body_bytes, as_body_limit>},
        {"tls_cert", assign<section, &A::tls_cert, as_readable_path>},
        {"tls_key", assign<section, &A::tls_key, as_readable_path>},
        {"web_dir", assign<section, &A::web_dir, as_string>},
        {"auth_failure_log_interval", assign<section, &A::auth_failure_log_interval, as_duration>},
        {"max_connections", assign<section, &A::max_connections, as_connection_count>},
        {"max_connections_per_address",
         assign<section, &A::max_connections_per_address, as_connection_count>},
        {"max_header_bytes", assign<section, &A::max_header_bytes, as_header_limit>},
        {"max_headers", assign<section, &A::max_headers, as_header_count>},
        {"request_timeout", assign<section, &A::request_timeout, as_duration>},
        {"write_timeout", assign<section, &A::write_timeout, as_duration>},
        {"max_queued_requests", assign<section, &A::max_queued_requests, as_connection_count>}};
}

Keys webhook_keys() {
    using W = Config::Webhooks;
    constexpr auto section = &Config::webhooks;
    return {{"urls", assign<section, &W::urls, as_webhook_urls>},
            {"secret", set_secret},
            {"secret_file", set_secret_file},
            {"timeout", assign<section, &W::timeout, as_duration>},
            {"max_backoff", assign<section, &W::max_backoff, as_duration>}};
}

Keys enforce_keys() {
    using E = Config::Enforce;
    constexpr auto section = &Config::enforce;
    return {
        {"enabled", assign<section, &E::enabled, as_bool>},
        {"table", assign<section, &E::table, as_table_name>},
        {"subscriber_interface", assign<section, &E::subscriber_interface, as_interface_name>},
        {"shaper_interface", assign<section, &E::shaper_interface, as_device_name>},
        {"delete_conntrack_on_block", assign<section, &E::delete_conntrack_on_block, as_bool>},
        {"arm_quota_below_bytes", assign<section, &E::arm_quota_below_bytes, as_arm_below>},
        {"forward_priority", assign<section, &E::forward_priority, as_hook_priority>},
        {"no_offload_mark", assign<section, &E::no_offload_mark, as_mark>},
        {"direct_queue_packets", assign<section, &E::direct_queue_packets, as_queue_packets>},
        {"leaf_queue_packets", assign<section, &E::leaf_queue_packets, as_queue_packets>},
    };
}

drops::DropConfig::Mode as_drop_mode(const std::string& src, const toml::node& n,
                                     const std::string& key) {
    const auto text = as_string(src, n, key);
    using M = drops::DropConfig::Mode;
    if (text == "off" || text == "auto" || text == "required") {
        return text == "off" ? M::Off : text == "auto" ? M::Auto : M::Required;
    }
    fail(src, n, key, "expected \"auto\", \"required\" or \"off\", got \"" + text + "\"");
}

std::uint32_t as_drop_flows(const std::string& src, const toml::node& n, const std::string& key) {
    return as_int_in<1024, 16777216, std::uint32_t>(src, n, key,
                                                    "a number of flows in 1024..16777216");
}

Keys drop_keys() {
    using D = drops::DropConfig;
    constexpr auto section = &Config::drops;
    return {{"mode", assign<section, &D::mode, as_drop_mode>},
            {"pin_dir", assign<section, &D::pin_dir, as_string>},
            {"max_flows", assign<section, &D::max_flows, as_drop_flows>}};
}

// [records], [flowlog], [ipfix]: the flow records (daemon/sinks/).

// A duration of at least `Seconds` seconds.
template <std::int64_t Seconds>
std::chrono::nanoseconds as_duration_from(const std::string& src, const toml::node& n,
                                          const std::string& key) {
    const auto d = as_duration(src, n, key);
    if (d < std::chrono::seconds(Seconds)) {
        const auto least = Seconds % 86400 == 0 ? std::to_string(Seconds / 86400) + "d"
                                                : std::to_string(Seconds) + "s";
        fail(src, n, key, "expected at least \"" + least + "\"");
    }
    return d;
}

std::size_t as_queue_records(const std::string& src, const toml::node& n, const std::string& key) {
    return as_int_in<1, 100'000'000, std::size_t>(src, n, key,
                                                  "a number of records in 1..100000000");
}

// Subscriber external ids, as the CLI and the API accept them.
std::vector<std::string> as_subscriber_ids(const std::string& src, const toml::node& n,
                                           const std::string& key) {
    if (!n.is_array()) {
        fail(src, n, key, "expected an array of subscriber ids like [\"cust-42\"]");
    }
    std::vector<std::string> ids;
    for (const auto& item : *n.as_array()) {
        auto id = as_string(src, item, key);
        if (id.empty() || id.size() > 200) {
            fail(src, item, key, "expected a subscriber id of 1..200 bytes");
        }
        ids.push_back(std::move(id));
    }
    return ids;
}

// "192.0.2.10:4739" or "[2001:db8::10]:4739": IP literals only (no lookups at start-up).
std::vector<sinks::IpfixCollector> as_collectors(const std::string& src, const toml::node& n,
                                                 const std::string& key) {
    if (!n.is_array()) {
        fail(src, n, key, "expected an array like [\"192.0.2.10:4739\"]");
    }
    std::vector<sinks::IpfixCollector> out;
    for (const auto& item : *n.as_array()) {
        const auto text = as_string(src, item, key);
        const auto parsed = parse_listen_address(text);
        if (!parsed || !core::IpAddress::parse(parsed->host)) {
            fail(src, item, key,
                 "expected an IP address and port like \"192.0.2.10:4739\" or "
                 "\"[2001:db8::10]:4739\", got \"" +
                     text + "\"");
        }
        out.push_back({text, parsed->host, parsed->port});
    }
    return out;
}

sinks::IpfixTransport as_transport(const std::string& src, const toml::node& n,
                                   const std::string& key) {
    const auto text = as_string(src, n, key);
    if (text != "udp" && text != "tcp") {
        fail(src, n, key, "expected \"udp\" or \"tcp\", got \"" + text + "\"");
    }
    return text == "udp" ? sinks::IpfixTransport::Udp : sinks::IpfixTransport::Tcp;
}

sinks::IpfixLayoutChoice as_layout(const std::string& src, const toml::node& n,
                                   const std::string& key) {
    const auto text = as_string(src, n, key);
    if (text != "biflow" && text != "per-direction") {
        fail(src, n, key, "expected \"biflow\" or \"per-direction\", got \"" + text + "\"");
    }
    return text == "biflow" ? sinks::IpfixLayoutChoice::Biflow
                            : sinks::IpfixLayoutChoice::PerDirection;
}

std::uint32_t as_observation_domain(const std::string& src, const toml::node& n,
                                    const std::string& key) {
    return as_int_in<0, 0xFFFFFFFFll, std::uint32_t>(src, n, key, "an integer in 0..4294967295");
}

std::uint32_t as_template_every(const std::string& src, const toml::node& n,
                                const std::string& key) {
    return as_int_in<1, 1'000'000, std::uint32_t>(src, n, key,
                                                  "a number of messages in 1..1000000");
}

// Room for the templates and two of the largest records, at most what IPFIX's length field holds.
std::size_t as_message_bytes(const std::string& src, const toml::node& n, const std::string& key) {
    return as_int_in<600, 65535, std::size_t>(src, n, key, "a number of bytes in 600..65535");
}

Keys flowlog_keys() {
    using F = sinks::FlowLogConfig;
    constexpr auto section = &Config::flowlog;
    return {
        {"enabled", assign<section, &F::enabled, as_bool>},
        {"retention", assign<section, &F::retention, as_duration_from<86400>>},
        {"only_translated", assign<section, &F::only_translated, as_bool>},
        {"subscribers", assign<section, &F::subscribers, as_subscriber_ids>},
        {"queue_records", assign<section, &F::queue_records, as_queue_records>},
        {"batch_records", assign<section, &F::batch_records, as_queue_records>},
        {"flush_interval", assign<section, &F::flush_interval, as_duration>},
    };
}

Keys ipfix_keys() {
    using I = sinks::IpfixConfig;
    constexpr auto section = &Config::ipfix;
    return {
        {"collectors", assign<section, &I::collectors, as_collectors>},
        {"transport", assign<section, &I::transport, as_transport>},
        {"observation_domain", assign<section, &I::observation_domain, as_observation_domain>},
        {"layout", assign<section, &I::layout, as_layout>},
        {"template_refresh", assign<section, &I::template_refresh, as_duration_from<1>>},
        {"template_every", assign<section, &I::template_every, as_template_every>},
        {"max_message_bytes", assign<section, &I::max_message_bytes, as_message_bytes>},
        {"queue_records", assign<section, &I::queue_records, as_queue_records>},
    };
}

// Every section and key the config file may have, with the reader of each.
const std::map<std::string, Keys>& schema() {
    using P = policy::PoliciesConfig;
    static const std::map<std::string, Keys> kSchema = {
        {"database", database_keys()},
        {"conntrack", conntrack_keys()},
        {"accounting", accounting_keys()},
        {"api", api_keys()},
        {"webhooks", webhook_keys()},
        {"subscribers", subscriber_keys()},
        {"policies",
         {{"dir", assign<&Config::policies, &P::dir, as_string>},
          {"reconcile_interval", assign<&Config::policies, &P::reconcile_interval, as_duration>},
          {"leases", assign<&Config::policies, &P::leases, as_bool>},
          {"lease_ttl", assign<&Config::policies, &P::lease_ttl, as_duration_from<1>>},
          {"lease_slice_time",
           assign<&Config::policies, &P::lease_slice_time, as_duration_from<1>>},
          {"lease_min_bytes", assign<&Config::policies, &P::lease_min_bytes, as_lease_bytes>}}},
        {"clock",
         {{"offset_file", assign<&Config::clock, &Config::Clock::offset_file, as_string>}}},
        {"enforce", enforce_keys()},
        {"journal",
         {{"dir", assign<&Config::journal, &runtime::JournalConfig::dir, as_string>},
          {"segment_bytes",
           assign<&Config::journal, &runtime::JournalConfig::segment_bytes, as_segment_bytes>},
          {"spill_after_bytes",
           assign<&Config::journal, &runtime::JournalConfig::spill_after_bytes, as_spill_bytes>}}},
        {"log", {{"level", assign<&Config::log, &Config::Log::level, as_string>}}},
        {"drops", drop_keys()},
        {"records",
         {{"interim_interval", assign<&Config::records, &sinks::RecordsConfig::interim_interval,
                                      as_duration_from<1>>}}},
        {"flowlog", flowlog_keys()},
        {"ipfix", ipfix_keys()},
    };
    return kSchema;
}

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') {
        return "gateway";
    }
    return buf;
}

void validate_webhooks(const Config::Webhooks& w, const std::string& source) {
    if (w.urls.empty()) {
        return;
    }
    if (w.secret.empty()) {
        throw ConfigError(source +
                          ": webhooks.secret: missing (set secret or secret_file: receivers "
                          "verify the X-Ctquota-Signature made with it)");
    }
    if (w.timeout > std::chrono::minutes(1)) {
        throw ConfigError(source + ": webhooks.timeout: at most \"60s\"");
    }
    if (w.max_backoff < std::chrono::seconds(1)) {
        throw ConfigError(source + ": webhooks.max_backoff: at least \"1s\"");
    }
}

void validate(Config& c, const std::string& source) {
    if (c.database.url.empty()) {
        throw ConfigError(source + ": database.url: missing (a libpq connection string or URI)");
    }
    if (c.conntrack.max_event_buffer_bytes < c.conntrack.event_buffer_bytes) {
        throw ConfigError(source +
                          ": conntrack.max_event_buffer_bytes: smaller than event_buffer_bytes");
    }
    static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                  "error", "critical", "off"};
    if (!kLevels.contains(c.log.level)) {
        throw ConfigError(source + ": log.level: expected one of trace, debug, info, warn, error");
    }
    if (c.accounting.gateway_id.empty()) {
        c.accounting.gateway_id = host_name();
    }
    // It heads every usage notice to the other gateways (core/usage_notice.hpp).
    if (c.accounting.gateway_id.size() > 255 ||
        c.accounting.gateway_id.find_first_of("\n\r") != std::string::npos) {
        throw ConfigError(source + ": accounting.gateway_id: at most 255 bytes, no line breaks");
    }
    if (c.api.tls_cert.empty() != c.api.tls_key.empty()) {
        throw ConfigError(source + ": api." + (c.api.tls_cert.empty() ? "tls_cert" : "tls_key") +
                          ": missing (HTTPS needs both tls_cert and tls_key; plain HTTP neither)");
    }
    validate_webhooks(c.webhooks, source);
}

bool is_host_name(std::string_view host) {
    return !host.empty() && host.size() <= 253 && host.front() != '-' && host.front() != '.' &&
           std::all_of(host.begin(), host.end(), [](char ch) {
               return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.';
           });
}

std::optional<std::uint16_t> parse_port(std::string_view digits) {
    unsigned port = 0;
    const auto* end = digits.data() + digits.size();
    const auto [ptr, ec] = std::from_chars(digits.data(), end, port);
    if (digits.empty() || ec != std::errc{} || ptr != end || port == 0 || port > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(port);
}

}  // namespace

std::optional<ListenAddress> parse_listen_address(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        return std::nullopt;
    }
    auto host = text.substr(0, colon);
    const auto port = parse_port(text.substr(colon + 1));
    if (!port) {
        return std::nullopt;
    }
    if (host.starts_with('[') && host.ends_with(']')) {
        host = host.substr(1, host.size() - 2);
        const auto ip = core::IpAddress::parse(host);
        if (!ip || ip->family != core::Family::V6) {
            return std::nullopt;
        }
        return ListenAddress{std::string(host), *port};
    }
    // An unbracketed IPv6 address is ambiguous ("::1:80"): ask for brackets.
    if (!is_host_name(host)) {
        return std::nullopt;
    }
    const bool looks_numeric = std::all_of(host.begin(), host.end(), [](char ch) {
        return std::isdigit(static_cast<unsigned char>(ch)) || ch == '.';
    });
    if (looks_numeric && !core::IpAddress::parse(host)) {
        return std::nullopt;  // "300.1.2.3" is no IPv4 address and no host name either
    }
    return ListenAddress{std::string(host), *port};
}

Config parse_config(std::string_view text, const std::string& source_name) {
    toml::table root;
    try {
        root = toml::parse(text, source_name);
    } catch (const toml::parse_error& e) {
        std::ostringstream out;
        out << source_name << ":" << e.source().begin.line << ": " << e.description();
        throw ConfigError(out.str());
    }
    Config config;
    config.source = source_name;
    for (const auto& [section_key, section] : root) {
        const std::string section_name{section_key.str()};
        auto known = schema().find(section_name);
        if (known == schema().end()) {
            fail(source_name, section, section_name, "unknown section");
        }
        if (!section.is_table()) {
            fail(source_name, section, section_name, "expected a [" + section_name + "] table");
        }
        for (const auto& [key, value] : *section.as_table()) {
            const std::string full = section_name + "." + std::string{key.str()};
            auto setter = known->second.find(std::string{key.str()});
            if (setter == known->second.end()) {
                fail(source_name, value, full, "unknown key");
            }
            setter->second(config, source_name, value, full);
        }
    }
    validate(config, source_name);
    return config;
}

Config load_config(const std::filesystem::path& file) {
    std::ifstream in(file);
    if (!in) {
        throw ConfigError(file.string() + ": cannot read the config file");
    }
    std::stringstream buf;
    buf << in.rdbuf();
    return parse_config(buf.str(), file.string());
}

}  // namespace ctquota::app
