// The web admin page: the files of the web directory served at their paths,
// index.html also at /. Only the files found there when the server starts
// become routes, so a request path never reaches the file system: there is
// nothing to traverse with "..", %2e%2e or a symlink (symlinks, hidden files
// and names needing percent-encoding are never listed). Contents are read per
// request, so an edited file shows on the next reload; browsers revalidate
// every time (no-cache + ETag) because the file names carry no version.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>

#include "api/problem.hpp"
#include "api/routes.hpp"

namespace ctquota::api {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxFiles = 2000;  // a web_dir of "/" must not scan the disk
constexpr int kMaxDepth = 6;

// The page only talks to this server: no inline script, no other origin.
constexpr const char* kPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'";

std::string content_type(const fs::path& file) {
    static const std::pair<const char*, const char*> kTypes[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
        {".webmanifest", "application/manifest+json"},
    };
    const auto ext = file.extension().string();
    for (const auto& [suffix, type] : kTypes) {
        if (ext == suffix) {
            return type;
        }
    }
    return "application/octet-stream";
}

// A name that is its own URL path segment (no percent-encoding needed) and not hidden.
bool servable_name(const std::string& name) {
    return !name.empty() && name.front() != '.' &&
           std::all_of(name.begin(), name.end(), [](char c) {
               return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                      c == '.' || c == '~';
           });
}

std::optional<std::string> read_file(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    std::ostringstream out;
    out << in.rdbuf();
    return in.bad() ? std::nullopt : std::optional<std::string>(out.str());
}

// Size and modification time: cheap, and changes whenever the file does.
std::string entity_tag(const fs::path& file) {
    std::error_code ec;
    const auto size = fs::file_size(file, ec);
    const auto mtime = fs::last_write_time(file, ec).time_since_epoch().count();
    return "W/\"" + std::to_string(size) + "-" + std::to_string(mtime) + "\"";
}

Reply serve_file(const fs::path& file, const Request& r) {
    const auto tag = entity_tag(file);
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Cache-Control", "no-cache"}, {"ETag", tag}, {"X-Content-Type-Options", "nosniff"}};
    const auto type = content_type(file);
    if (type.starts_with("text/html")) {
        headers.emplace_back("Content-Security-Policy", kPolicy);
        headers.emplace_back("Referrer-Policy", "no-referrer");
        headers.emplace_back("X-Frame-Options", "DENY");
    }
    if (r.header("if-none-match") == tag) {
        return Reply{304, "", "", std::move(headers)};
    }
    auto body = read_file(file);
    if (!body) {
        throw not_found("the web page's file " + file.filename().string() +
                        " is gone (the web directory changed since ctquotad started; restart it)");
    }
    return Reply{200, type, std::move(*body), std::move(headers)};
}

// URL paths ("/js/app.js") of the servable files under `root`, sorted.
std::vector<std::string> list_files(const fs::path& root) {
    std::vector<std::string> out;
    std::error_code ec;
    fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const auto& entry = *it;
        const auto name = entry.path().filename().string();
        if (entry.is_symlink() || !servable_name(name)) {
            if (entry.is_directory()) {
                it.disable_recursion_pending();
            }
            continue;
        }
        if (entry.is_directory()) {
            if (it.depth() + 1 >= kMaxDepth) {
                it.disable_recursion_pending();
            }
            continue;
        }
        if (!entry.is_regular_file()) {
            continue;
        }
        if (out.size() == kMaxFiles) {
            spdlog::warn("api.web_dir {}: more than {} files; serving the first {} only",
                         root.string(), kMaxFiles, kMaxFiles);
            break;
        }
        out.push_back("/" + entry.path().lexically_relative(root).generic_string());
    }
    if (ec) {
        spdlog::warn("api.web_dir {}: {}", root.string(), ec.message());
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

void add_web_routes(Router& router, const fs::path& web_dir) {
    std::error_code ec;
    const auto root = fs::canonical(web_dir, ec);
    if (ec || !fs::is_directory(root)) {
        spdlog::warn("api.web_dir {}: not a directory; the web page is not served",
                     web_dir.string());
        return;
    }
    const auto paths = list_files(root);
    for (const auto& path : paths) {
        const auto file = root / path.substr(1);
        router.add({"GET", path, Access::Public, true,
                    [file](const Request& r) { return serve_file(file, r); }});
    }
    if (std::find(paths.begin(), paths.end(), "/index.html") == paths.end()) {
        spdlog::warn("api.web_dir {}: no index.html; nothing is served at /", root.string());
    } else {
        const auto index = root / "index.html";
        router.add({"GET", "/", Access::Public, false,
                    [index](const Request& r) { return serve_file(index, r); }});
    }
    spdlog::info("web page: {} files from {}", paths.size(), root.string());
}

}  // namespace ctquota::api
