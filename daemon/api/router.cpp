#include "api/router.hpp"

#include <algorithm>
#include <cctype>

#include "api/problem.hpp"

namespace ctquota::api {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    if (path.starts_with('/')) {
        path.remove_prefix(1);
    }
    while (true) {
        const auto slash = path.find('/');
        out.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) {
            return out;
        }
        path.remove_prefix(slash + 1);
    }
}

bool is_capture(std::string_view segment) {
    return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

// nullopt: the path does not fit the pattern. Throws 400 on a broken escape.
std::optional<std::map<std::string, std::string>> match_pattern(
    std::string_view pattern, const std::vector<std::string_view>& segments) {
    const auto parts = split_path(pattern);
    if (parts.size() != segments.size()) {
        return std::nullopt;
    }
    std::map<std::string, std::string> params;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (!is_capture(parts[i])) {
            if (parts[i] != segments[i]) {
                return std::nullopt;
            }
            continue;
        }
        if (segments[i].empty()) {
            return std::nullopt;
        }
        auto decoded = percent_decode(segments[i]);
        if (!decoded) {
            throw bad_request("the path segment '" + std::string(segments[i]) +
                              "' has a broken percent-escape (use %XX with two hex digits)");
        }
        params.emplace(std::string(parts[i].substr(1, parts[i].size() - 2)), std::move(*decoded));
    }
    return params;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size()) {
            return std::nullopt;
        }
        const auto hi = s[i + 1];
        const auto lo = s[i + 2];
        if (!std::isxdigit(static_cast<unsigned char>(hi)) ||
            !std::isxdigit(static_cast<unsigned char>(lo))) {
            return std::nullopt;
        }
        const auto nibble = [](char c) {
            return std::isdigit(static_cast<unsigned char>(c))
                       ? c - '0'
                       : std::tolower(static_cast<unsigned char>(c)) - 'a' + 10;
        };
        out += static_cast<char>(nibble(hi) * 16 + nibble(lo));
        i += 2;
    }
    return out;
}

void Router::add(Route route) {
    routes_.push_back(std::move(route));
}

RouteMatch Router::match(std::string_view method, std::string_view raw_path) const {
    const auto segments = split_path(raw_path);
    const std::string_view wanted = method == "HEAD" ? "GET" : method;
    std::vector<std::string> allow;
    for (const auto& route : routes_) {
        auto params = match_pattern(route.pattern, segments);
        if (!params) {
            continue;
        }
        if (route.method == wanted) {
            return RouteMatch{&route, std::move(*params)};
        }
        allow.push_back(route.method);
        if (route.method == "GET") {
            allow.emplace_back("HEAD");
        }
    }
    if (allow.empty()) {
        constexpr std::size_t kEcho = 200;
        throw not_found("no such path: " + std::string(raw_path.substr(0, kEcho)) +
                        " (the API lives under /api/v1/; see /healthz, /readyz, /metrics)");
    }
    std::sort(allow.begin(), allow.end());
    allow.erase(std::unique(allow.begin(), allow.end()), allow.end());
    throw method_not_allowed(allow);
}

}  // namespace ctquota::api
