#include "app/config.hpp"

#include <unistd.h>

#include <toml++/toml.h>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "core/duration.hpp"

namespace ctquota::app {
namespace {

std::string where(const std::string& source, const toml::node& node, const std::string& key) {
    std::ostringstream out;
    out << source << ":" << node.source().begin.line << ": " << key;
    return out.str();
}

[[noreturn]] void fail(const std::string& source, const toml::node& node, const std::string& key,
                       const std::string& message) {
    throw ConfigError(where(source, node, key) + ": " + message);
}

std::string as_string(const std::string& src, const toml::node& n, const std::string& key) {
    if (!n.is_string()) {
        fail(src, n, key, "expected a string");
    }
    return n.as_string()->get();
}

std::chrono::nanoseconds as_duration(const std::string& src, const toml::node& n,
                                     const std::string& key) {
    auto d = core::parse_duration(as_string(src, n, key));
    if (!d || d->count() <= 0) {
        fail(src, n, key, "expected a positive duration like \"10s\" or \"500ms\"");
    }
    return *d;
}

std::uint64_t as_bytes(const std::string& src, const toml::node& n, const std::string& key) {
    if (n.is_integer() && n.as_integer()->get() > 0) {
        return static_cast<std::uint64_t>(n.as_integer()->get());
    }
    if (n.is_string()) {
        if (auto b = core::parse_byte_size(n.as_string()->get()); b && *b > 0) {
            return *b;
        }
    }
    fail(src, n, key, "expected a positive size like \"128MiB\" or a number of bytes");
}

bool as_bool(const std::string& src, const toml::node& n, const std::string& key) {
    if (!n.is_boolean()) {
        fail(src, n, key, "expected true or false");
    }
    return n.as_boolean()->get();
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
         {{"listen",
           [](Config& c, auto& s, auto& n, auto& k) { c.api.listen = as_string(s, n, k); }}}},
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
}

}  // namespace

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
