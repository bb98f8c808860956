// api/web_routes.cpp on a scratch directory: which files become routes
// (hidden files, symlinks and names needing percent-encoding never do),
// content types, index.html at /, revalidation with ETag, a file removed
// after start-up, and a web_dir that is not a directory.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "api/problem.hpp"
#include "api/routes.hpp"

using namespace ctquota::api;
namespace fs = std::filesystem;

namespace {

struct ScratchDir {
    fs::path root;
    ScratchDir() {
        char templ[] = "/tmp/ctquota-web-test-XXXXXX";
        root = ::mkdtemp(templ);
    }
    ~ScratchDir() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    void write(const std::string& rel, const std::string& text) const {
        fs::create_directories((root / rel).parent_path());
        std::ofstream(root / rel) << text;
    }
};

std::string header(const Reply& r, const std::string& name) {
    for (const auto& [n, v] : r.headers) {
        if (n == name) {
            return v;
        }
    }
    return "";
}

Reply get(const Router& router, const std::string& path, const std::string& etag = "") {
    Request r;
    r.method = "GET";
    r.path = path;
    if (!etag.empty()) {
        r.headers["if-none-match"] = etag;
    }
    return router.match("GET", path).route->handler(r);
}

int status_of(const Router& router, const std::string& path) {
    try {
        return get(router, path).status;
    } catch (const ApiError& e) {
        return e.problem().status;
    }
}

}  // namespace

TEST_CASE("web routes: the files found at start-up, and nothing else") {
    ScratchDir dir;
    dir.write("index.html", "<!doctype html><title>t</title>");
    dir.write("js/main.js", "export {};");
    dir.write("css/app.css", "body{}");
    dir.write("favicon.svg", "<svg/>");
    dir.write("data.bin", "x");
    dir.write(".hidden", "secret");
    dir.write(".git/config", "secret");
    dir.write("a b.js", "spaces need escaping");
    fs::create_symlink("/etc/passwd", dir.root / "passwd");
    fs::create_directory_symlink("/etc", dir.root / "etc");

    Router router;
    add_web_routes(router, dir.root);
    std::set<std::string> paths;
    for (const auto& route : router.routes()) {
        CHECK(route.method == "GET");
        CHECK(route.access == Access::Public);
        paths.insert(route.pattern);
    }
    CHECK(paths == std::set<std::string>{"/", "/index.html", "/js/main.js", "/css/app.css",
                                         "/favicon.svg", "/data.bin"});

    const struct {
        const char* path;
        const char* type;
    } kTypes[] = {{"/", "text/html; charset=utf-8"},
                  {"/index.html", "text/html; charset=utf-8"},
                  {"/js/main.js", "text/javascript; charset=utf-8"},
                  {"/css/app.css", "text/css; charset=utf-8"},
                  {"/favicon.svg", "image/svg+xml"},
                  {"/data.bin", "application/octet-stream"}};
    for (const auto& row : kTypes) {
        CAPTURE(row.path);
        const auto reply = get(router, row.path);
        CHECK(reply.status == 200);
        CHECK(reply.content_type == row.type);
        CHECK(header(reply, "Cache-Control") == "no-cache");
        CHECK(header(reply, "X-Content-Type-Options") == "nosniff");
        CHECK(header(reply, "ETag").starts_with("W/\""));
        CHECK(!header(reply, "Content-Security-Policy").empty() ==
              std::string(row.type).starts_with("text/html"));
    }
    CHECK(get(router, "/").body == "<!doctype html><title>t</title>");

    const auto etag = header(get(router, "/js/main.js"), "ETag");
    const auto again = get(router, "/js/main.js", etag);
    CHECK(again.status == 304);
    CHECK(again.body.empty());
    CHECK(get(router, "/js/main.js", "W/\"other\"").status == 200);

    for (const auto* path : {"/.hidden", "/.git/config", "/passwd", "/etc/passwd", "/a b.js",
                             "/../etc/passwd", "/js/../../etc/passwd", "/js", "/nosuch"}) {
        CAPTURE(path);
        CHECK(status_of(router, path) == 404);
    }

    fs::remove(dir.root / "css/app.css");
    CHECK(status_of(router, "/css/app.css") == 404);  // listed at start-up, gone now
}

TEST_CASE("web routes: a web_dir that is missing or has no index.html") {
    Router none;
    add_web_routes(none, "/nonexistent/ctquota-web");
    CHECK(none.routes().empty());

    ScratchDir dir;
    dir.write("app.js", "1");
    Router no_index;
    add_web_routes(no_index, dir.root);
    REQUIRE(no_index.routes().size() == 1);
    CHECK(no_index.routes()[0].pattern == "/app.js");
}
