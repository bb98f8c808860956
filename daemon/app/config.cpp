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

const std::map<std::string, std::map<std::string, Setter>>& schema() {
    static const std::map<std::string, std::map<std::string, Setter>> kSchema = {
        {"database",
         {{"url",
           [](Config& c, auto& s, auto& n, auto& k) { c.database.url = as_string(s, n, k); }},
          {"schema_dir", [](Config& c, auto& s, auto& n,
                            auto& k) { c.database.schema_dir = as_string(s, n, k); }}}},
        {"conntrack",
         {{"poll_interval", [](Config& c, auto& s, auto& n,
                               auto& k) { c.conntrack.poll_interval = as_duration(s, n, k); }},
          {"event_buffer_bytes",
           [](Config& c, auto& s, auto& n, auto& k) {
               c.conntrack.event_buffer_bytes = as_bytes(s, n, k);
           }},
          {"max_event_buffer_bytes",
           [](Config& c, auto& s, auto& n, auto& k) {
               c.conntrack.max_event_buffer_bytes = as_bytes(s, n, k);
           }},
          {"queue_samples", [](Config& c, auto& s, auto& n,
                               auto& k) { c.conntrack.queue_samples = as_bytes(s, n, k); }},
          {"reliable_events", [](Config& c, auto& s, auto& n,
                                 auto& k) { c.conntrack.reliable_events = as_bool(s, n, k); }},
          {"enable_accounting_sysctl",
           [](Config& c, auto& s, auto& n, auto& k) {
               c.conntrack.enable_accounting_sysctl = as_bool(s, n, k);
           }}}},
        {"accounting",
         {{"flush_interval", [](Config& c, auto& s, auto& n,
                                auto& k) { c.accounting.flush_interval = as_duration(s, n, k); }},
          {"gateway_id", [](Config& c, auto& s, auto& n,
                            auto& k) { c.accounting.gateway_id = as_string(s, n, k); }},
          {"retry_max", [](Config& c, auto& s, auto& n,
                           auto& k) { c.accounting.retry_max = as_duration(s, n, k); }}}},
        {"api",
         {{"enabled",
           [](Config& c, auto& s, auto& n, auto& k) { c.api.enabled = as_bool(s, n, k); }},
          {"listen", [](Config& c, auto& s, auto& n, auto& k) { set_listen(c, s, n, k); }},
          {"max_body_bytes", [](Config& c, auto& s, auto& n,
                                auto& k) { c.api.max_body_bytes = as_body_limit(s, n, k); }},
          {"tls_cert", [](Config& c, auto& s, auto& n,
                          auto& k) { c.api.tls_cert = as_readable_path(s, n, k); }},
          {"tls_key",
           [](Config& c, auto& s, auto& n, auto& k) { c.api.tls_key = as_readable_path(s, n, k); }},
          {"web_dir",
           [](Config& c, auto& s, auto& n, auto& k) { c.api.web_dir = as_string(s, n, k); }}}},
        {"webhooks",
         {{"urls", [](Config& c, auto& s, auto& n,
                      auto& k) { c.webhooks.urls = as_webhook_urls(s, n, k); }},
          {"secret", [](Config& c, auto& s, auto& n, auto& k) { set_secret(c, s, n, k); }},
          {"secret_file",
           [](Config& c, auto& s, auto& n, auto& k) { set_secret_file(c, s, n, k); }},
          {"timeout",
           [](Config& c, auto& s, auto& n, auto& k) { c.webhooks.timeout = as_duration(s, n, k); }},
          {"max_backoff", [](Config& c, auto& s, auto& n,
                             auto& k) { c.webhooks.max_backoff = as_duration(s, n, k); }}}},
        {"policies",
         {{"dir", [](Config& c, auto& s, auto& n,
                     auto& k) { c.policies.dir = as_string(s, n, k); }},
          {"reconcile_interval",
           [](Config& c, auto& s, auto& n, auto& k) {
               c.policies.reconcile_interval = as_duration(s, n, k);
           }}}},
        {"clock",
         {{"offset_file",
           [](Config& c, auto& s, auto& n, auto& k) {
               c.clock.offset_file = as_string(s, n, k);
           }}}},
        {"enforce",
         {{"enabled",
           [](Config& c, auto& s, auto& n, auto& k) { c.enforce.enabled = as_bool(s, n, k); }},
          {"table", [](Config& c, auto& s, auto& n,
                       auto& k) { c.enforce.table = as_enforce_name(s, n, k, 64); }},
          {"subscriber_interface",
           [](Config& c, auto& s, auto& n, auto& k) {
               c.enforce.subscriber_interface = as_enforce_name(s, n, k, 15, true);
           }},
          {"delete_conntrack_on_block",
           [](Config& c, auto& s, auto& n, auto& k) {
               c.enforce.delete_conntrack_on_block = as_bool(s, n, k);
           }},
          {"arm_quota_below_bytes",
           [](Config& c, auto& s, auto& n, auto& k) {
               c.enforce.arm_quota_below_bytes =
                   n.is_integer() && n.as_integer()->get() == 0 ? 0 : as_bytes(s, n, k);
           }},
          {"forward_priority",
           [](Config& c, auto& s, auto& n, auto& k) {
               if (!n.is_integer() || n.as_integer()->get() < -400 ||
                   n.as_integer()->get() > 400) {
                   fail(s, n, k, "expected an integer in -400..400 (filter = 0)");
               }
               c.enforce.forward_priority = static_cast<int>(n.as_integer()->get());
           }}}},
        {"log",
         {{"level",
           [](Config& c, auto& s, auto& n, auto& k) { c.log.level = as_string(s, n, k); }}}},
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
