#include "api/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "api/tokens.hpp"
#include "store/token_store.hpp"

namespace ctquota::api {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kLoggedPath = 200;

TokenLookup lookup_in(DatabasePool& pool) {
    return [&pool](const std::string& hash) -> std::optional<Principal> {
        auto lease = pool.acquire();
        const auto token = store::TokenStore(*lease).find_active(hash);
        if (!token) {
            return std::nullopt;
        }
        return Principal{token->id, token->name, parse_role(token->role).value_or(Role::Billing)};
    };
}

// Bytes a terminal or a log parser could trip over become '?'.
std::string printable(std::string_view s) {
    std::string out(s.substr(0, kLoggedPath));
    for (auto& c : out) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f) {
            c = '?';
        }
    }
    return s.size() > kLoggedPath ? out + "..." : out;
}

Reply problem_reply(const Problem& p) {
    return Reply{p.status, "application/problem+json", to_body(problem_json(p)), p.headers};
}

bool sets_header(const Reply& reply, std::string_view name) {
    return std::any_of(reply.headers.begin(), reply.headers.end(), [name](const auto& h) {
        return std::equal(h.first.begin(), h.first.end(), name.begin(), name.end(),
                          [](char a, char b) { return std::tolower(a) == std::tolower(b); });
    });
}

// Usage and tokens are nobody's cache's business, and a browser must take a
// body for what its Content-Type says, never sniff it into HTML. A route that
// says otherwise (the web page's files: no-cache + ETag) wins.
Reply with_default_headers(Reply reply) {
    for (const auto& [name, value] :
         {std::pair{"Cache-Control", "no-store"}, std::pair{"X-Content-Type-Options", "nosniff"}}) {
        if (!sets_header(reply, name)) {
            reply.headers.emplace_back(name, value);
        }
    }
    return reply;
}

HttpServerOptions http_options(const ServerOptions& o) {
    HttpServerOptions h;
    h.host = o.host;
    h.port = o.port;
    h.listen_text = o.listen_text;
    h.tls_cert = o.tls_cert;
    h.tls_key = o.tls_key;
    h.limits = o.limits;
    return h;
}

}  // namespace

Server::Server(ServerOptions options, metrics::Metrics& metrics, const core::Clock& clock)
    : options_(std::move(options)),
      metrics_(metrics),
      pool_(options_.database_url, options_.limits.worker_threads, options_.statement_timeout),
      services_{pool_, clock, metrics, options_.binding_rules},
      auth_(lookup_in(pool_), clock, options_.token_cache_ttl),
      auth_failures_(options_.auth_failure_log_interval),
      router_(make_router(services_)),
      http_(std::make_unique<HttpServer>(
          http_options(options_), [this](Request r) { return serve(std::move(r)); },
          [this](int status, const std::string& detail, const Request& partial) {
              return refused(status, detail, partial);
          },
          metrics_.http_connections)) {
    if (!options_.web_dir.empty()) {
        add_web_routes(router_, options_.web_dir);
    }
}

Server::~Server() {
    stop();
}

void Server::start() {
    http_->start();
    started_ = true;
    spdlog::info("REST API listening on {}{} (at most {} connections, {} per address)",
                 options_.listen_text, options_.tls_cert.empty() ? "" : " (HTTPS)",
                 http_->max_connections(), options_.limits.connections.per_address);
}

void Server::stop() {
    if (!started_) {
        return;
    }
    started_ = false;
    http_->stop();
    for (const auto& line : auth_failures_.flush()) {
        spdlog::warn("{}", line);
    }
    spdlog::info("REST API stopped");
}

Reply Server::serve(Request r) {
    const auto started = Clock::now();
    std::string route = "unmatched";
    bool quiet = false;
    Reply reply;
    try {
        auto match = router_.match(r.method, r.path);
        route = match.route->pattern;
        quiet = match.route->quiet;
        r.path_params = std::move(match.params);
        if (match.route->access != Access::Public) {
            r.principal = authenticate(r, match.route->access);
        }
        if (!r.body.empty() && r.header("content-type").starts_with("multipart/form-data")) {
            throw unsupported_media_type(r.header("content-type"));
        }
        reply = match.route->handler(r);
    } catch (...) {
        reply = reply_for_exception(r.method, r.path);
    }
    record(r.method, r.path, route, quiet, reply.status, started);
    return with_default_headers(std::move(reply));
}

Reply Server::refused(int status, const std::string& detail, const Request& partial) {
    const auto started = Clock::now();
    const Problem p = status == 413 ? payload_too_large(options_.limits.max_body_bytes).problem()
                                    : Problem{status, "http", status_title(status), detail, {}, {}};
    record(partial.method.empty() ? "-" : partial.method, partial.path, "unmatched", false, status,
           started);
    return with_default_headers(problem_reply(p));
}

// A refused credential is logged at a limited rate with the client's address
// (AuthFailureLog); the request line itself is then only a debug line.
Principal Server::authenticate(const Request& r, Access access) {
    try {
        return auth_.authenticate(r.header("authorization"), access);
    } catch (const ApiError& e) {
        if (e.problem().status == 401) {
            for (const auto& line : auth_failures_.record(
                     r.client_address, printable(r.method) + " " + printable(r.path),
                     e.problem().detail, services_.clock.now())) {
                spdlog::warn("{}", line);
            }
        }
        throw;
    }
}

Reply Server::reply_for_exception(const std::string& method, const std::string& path) {
    try {
        throw;
    } catch (const ApiError& e) {
        return problem_reply(e.problem());
    } catch (const store::ConflictError& e) {
        return problem_reply(conflict(e.what()).problem());
    } catch (const std::invalid_argument& e) {
        return problem_reply(invalid_body({{"(body)", e.what()}}).problem());
    } catch (const store::DatabaseError& e) {
        ++metrics_.db_errors;
        spdlog::warn("http {} {}: database error: {}", method, printable(path), e.what());
        return problem_reply(
            unavailable("the database is unreachable or failing; retry shortly").problem());
    } catch (const std::exception& e) {
        spdlog::error("http {} {}: internal error: {}", method, printable(path), e.what());
        return problem_reply(Problem{500,
                                     "internal",
                                     status_title(500),
                                     "the server failed to answer; its log has the details",
                                     {},
                                     {}});
    }
}

void Server::record(const std::string& method, const std::string& path, const std::string& route,
                    bool quiet, int status, Clock::time_point started) {
    const auto latency =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
    metrics_.http.observe(route, status, latency);
    const bool debug_only = quiet || status == 401;
    spdlog::log(debug_only ? spdlog::level::debug : spdlog::level::info,
                "http {} {} {} {:.2f}ms ({})", printable(method), printable(path), status,
                static_cast<double>(latency.count()) / 1000.0, route);
}

}  // namespace ctquota::api
