#pragma once
// Typed readers of TOML values for the config parser (app/config.cpp). Each
// throws ConfigError "file:line: key: what is wrong" on a bad value.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

namespace ctquota::app::config_values {

std::string where(const std::string& source, const toml::node& node, const std::string& key);
[[noreturn]] void fail(const std::string& source, const toml::node& node, const std::string& key,
                       const std::string& message);

std::string as_string(const std::string& src, const toml::node& n, const std::string& key);
// A positive duration: "10s", "500ms".
std::chrono::nanoseconds as_duration(const std::string& src, const toml::node& n,
                                     const std::string& key);
// A positive size: "128MiB" or a number of bytes.
std::uint64_t as_bytes(const std::string& src, const toml::node& n, const std::string& key);
// A request body limit: a size of at most 64 MiB.
std::uint64_t as_body_limit(const std::string& src, const toml::node& n, const std::string& key);
bool as_bool(const std::string& src, const toml::node& n, const std::string& key);
// A file the daemon must read at start-up (a TLS certificate, a secret),
// read now so that a typo is a config error naming the key; its content.
std::string readable_file(const std::string& src, const toml::node& n, const std::string& key);
std::filesystem::path as_readable_path(const std::string& src, const toml::node& n,
                                       const std::string& key);
std::string trim_line_end(std::string s);
bool is_webhook_url(std::string_view url);
std::vector<std::string> as_webhook_urls(const std::string& src, const toml::node& n,
                                         const std::string& key);
// nftables table names and interface names: letters, digits, '_', '-', '.'.
std::string as_enforce_name(const std::string& src, const toml::node& n, const std::string& key,
                            std::size_t max_length, bool may_be_empty = false);

}  // namespace ctquota::app::config_values
