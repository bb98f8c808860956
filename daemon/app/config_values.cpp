// Typed readers of TOML values for the config parser: each checks its value
// and fails with "file:line: key: what is wrong".
#include "app/config_values.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "app/config.hpp"
#include "core/duration.hpp"

namespace ctquota::app::config_values {

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

std::uint64_t as_body_limit(const std::string& src, const toml::node& n, const std::string& key) {
    constexpr std::uint64_t kMax = 64ull << 20;
    const auto bytes = as_bytes(src, n, key);
    if (bytes > kMax) {
        fail(src, n, key, "at most \"64MiB\": request bodies are held in memory");
    }
    return bytes;
}

bool as_bool(const std::string& src, const toml::node& n, const std::string& key) {
    if (!n.is_boolean()) {
        fail(src, n, key, "expected true or false");
    }
    return n.as_boolean()->get();
}

// A file the daemon must read at start-up (a TLS certificate, a secret);
// checked here so a typo is a config error naming the key, not a late failure.
std::string readable_file(const std::string& src, const toml::node& n, const std::string& key) {
    const auto path = as_string(src, n, key);
    std::error_code ec;
    std::ifstream in(path, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    if (path.empty() || !in || std::filesystem::is_directory(path, ec)) {
        fail(src, n, key, "cannot read \"" + path + "\"");
    }
    return buf.str();
}

std::filesystem::path as_readable_path(const std::string& src, const toml::node& n,
                                       const std::string& key) {
    readable_file(src, n, key);
    return as_string(src, n, key);
}

std::string trim_line_end(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) {
        s.pop_back();
    }
    return s;
}

bool is_webhook_url(std::string_view url) {
    for (std::string_view scheme : {"http://", "https://"}) {
        if (url.starts_with(scheme)) {
            const auto rest = url.substr(scheme.size());
            return !rest.empty() && rest.front() != '/' && rest.front() != ':' &&
                   std::none_of(rest.begin(), rest.end(), [](char ch) {
                       return std::isspace(static_cast<unsigned char>(ch)) || ch == '#';
                   });
        }
    }
    return false;
}

std::vector<std::string> as_webhook_urls(const std::string& src, const toml::node& n,
                                         const std::string& key) {
    if (!n.is_array()) {
        fail(src, n, key, "expected an array of URLs like [\"https://billing.example.net/hook\"]");
    }
    std::vector<std::string> urls;
    for (const auto& item : *n.as_array()) {
        const auto url = as_string(src, item, key);
        if (!is_webhook_url(url) || url.size() > 2000) {
            fail(src, item, key, "expected an http:// or https:// URL, got \"" + url + "\"");
        }
        urls.push_back(url);
    }
    return urls;
}

// nftables table names and interface names: letters, digits, '_', '-', '.'
// (an interface name is at most 15 characters; it may be empty: no shaping).
std::string as_enforce_name(const std::string& src, const toml::node& n, const std::string& key,
                            std::size_t max_length, bool may_be_empty) {
    auto text = as_string(src, n, key);
    const bool ok_chars = std::all_of(text.begin(), text.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '_' || ch == '-' ||
               ch == '.';
    });
    if (!ok_chars || text.size() > max_length || (text.empty() && !may_be_empty)) {
        fail(src, n, key,
             "expected " + std::string(may_be_empty ? "" : "a non-empty ") + "name of at most " +
                 std::to_string(max_length) + " letters, digits, '_', '-' or '.'");
    }
    return text;
}

}  // namespace ctquota::app::config_values
