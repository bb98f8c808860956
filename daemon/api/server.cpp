#include "api/server.hpp"

#include <httplib.h>
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
constexpr std::size_t kKeepAliveRequests = 100;

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

std::string raw_path(const std::string& target) {
    return target.substr(0, target.find('?'));
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

Request to_request(const httplib::Request& req, std::string body) {
    Request r;
    r.method = req.method;
    r.path = raw_path(req.target);
    r.query.insert(req.params.begin(), req.params.end());
    for (const auto& [name, value] : req.headers) {
        std::string lower = name;
        for (auto& c : lower) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        r.headers.emplace(std::move(lower), value);
    }
    r.body = std::move(body);
    r.client_address = req.remote_addr;
    return r;
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

void write(httplib::Response& res, const Reply& reply) {
    res.status = reply.status;
    // Usage and tokens are nobody's cache's business, and a browser must take
    // a body for what its Content-Type says, never sniff it into HTML. A
    // route that says otherwise (the web page's files: no-cache + ETag) wins.
    for (const auto& [name, value] :
         {std::pair{"Cache-Control", "no-store"}, std::pair{"X-Content-Type-Options", "nosniff"}}) {
        if (!sets_header(reply, name)) {
            res.set_header(name, value);
        }
    }
    for (const auto& [name, value] : reply.headers) {
        res.set_header(name, value);
    }
    if (!reply.content_type.empty()) {
        res.set_content(reply.body, reply.content_type.c_str());
    }
}

// Methods whose body httplib reads before routing; without a length or a
// chunked encoding there is none, and httplib would wait for the connection to close.
bool carries_body(const httplib::Request& req) {
    const bool body_method = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
                             req.method == "DELETE";
    if (!body_method) {
        return false;
    }
    return req.has_header("Transfer-Encoding") ||
           (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
}

// HTTPS when a certificate is configured. cpp-httplib loads the files here;
// a certificate or key it cannot use is fatal at start-up, like a bad config.
std::unique_ptr<httplib::Server> make_http_server(const ServerOptions& o) {
    if (o.tls_cert.empty()) {
        return std::make_unique<httplib::Server>();
    }
    auto server = std::make_unique<httplib::SSLServer>(o.tls_cert.c_str(), o.tls_key.c_str());
    if (!server->is_valid()) {
        throw std::runtime_error("api.tls_cert, api.tls_key: cannot use '" + o.tls_cert +
                                 "' and '" + o.tls_key +
                                 "' (PEM certificate and its unencrypted private key expected)");
    }
    if (SSL_CTX_set_min_proto_version(server->ssl_context(), TLS1_2_VERSION) != 1) {
        throw std::runtime_error("api: cannot require TLS 1.2 or newer");
    }
    return server;
}

}  // namespace

Server::Server(ServerOptions options, metrics::Metrics& metrics, const core::Clock& clock)
    : options_(std::move(options)),
      metrics_(metrics),
      pool_(options_.database_url, options_.threads, options_.statement_timeout),
      services_{pool_, clock, metrics, options_.binding_rules},
      auth_(lookup_in(pool_), clock, options_.token_cache_ttl),
      auth_failures_(options_.auth_failure_log_interval),
      router_(make_router(services_)),
      http_(make_http_server(options_)) {
    if (!options_.web_dir.empty()) {
        add_web_routes(router_, options_.web_dir);
    }
    install_handlers();
}

Server::~Server() {
    stop();
}

void Server::start() {
    if (!http_->bind_to_port(options_.host, options_.port)) {
        const int err = errno;
        throw std::runtime_error("api.listen: cannot listen on " + options_.listen_text + ": " +
                                 (err != 0 ? std::strerror(err) : "bind failed"));
    }
    thread_ = std::thread([this] { http_->listen_after_bind(); });
    spdlog::info("REST API listening on {}{}", options_.listen_text,
                 options_.tls_cert.empty() ? "" : " (HTTPS)");
}

void Server::stop() {
    if (!thread_.joinable()) {
        return;
    }
    http_->stop();
    thread_.join();
    for (const auto& line : auth_failures_.flush()) {
        spdlog::warn("{}", line);
    }
    spdlog::info("REST API stopped");
}

void Server::install_handlers() {
    const auto threads = options_.threads;
    http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http_->set_payload_max_length(options_.max_body_bytes);
    // Headers and body go out in separate writes: with Nagle's algorithm the
    // body then waits for the client's delayed ACK, 40 ms per request.
    http_->set_tcp_nodelay(true);
    // httplib closes a keep-alive connection after 5 requests by default, so
    // busy clients reconnect (and redo TLS) all the time. Not unlimited: a
    // connection holds a worker thread while it lasts, and with more clients
    // than threads the rotation is what lets the others in (wrk with 16
    // connections on 8 threads: timeouts at 1000, none at 100).
    http_->set_keep_alive_max_count(kKeepAliveRequests);
    http_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (carries_body(req)) {
            return httplib::Server::HandlerResponse::Unhandled;
        }
        serve(req, res, "", std::nullopt);
        return httplib::Server::HandlerResponse::Handled;
    });
    const httplib::Server::HandlerWithContentReader with_body =
        [this](const httplib::Request& req, httplib::Response& res,
               const httplib::ContentReader& read) {
            std::string body;
            std::optional<ApiError> error;
            if (req.is_multipart_form_data()) {
                // Drained, so the connection stays usable, and refused.
                read([](const httplib::MultipartFormData&) { return true; },
                     [](const char*, std::size_t) { return true; });
                error = unsupported_media_type(req.get_header_value("Content-Type"));
            } else {
                bool too_big = false;
                const bool ok = read([&](const char* data, std::size_t n) {
                    too_big = body.size() + n > options_.max_body_bytes;
                    if (!too_big) {
                        body.append(data, n);
                    }
                    return !too_big;
                });
                if (too_big || res.status == 413) {
                    error = payload_too_large(options_.max_body_bytes);
                } else if (!ok) {
                    error = bad_request(
                        "the request body could not be read (broken chunked encoding, or the "
                        "connection ended early)");
                }
            }
            res.status = -1;
            serve(req, res, std::move(body), std::move(error));
        };
    http_->Post(".*", with_body);
    http_->Put(".*", with_body);
    http_->Patch(".*", with_body);
    http_->Delete(".*", with_body);
    // Requests httplib refuses itself (a malformed request line, a URI too long).
    const httplib::Server::HandlerWithResponse on_error = [this](const httplib::Request& req,
                                                                 httplib::Response& res) {
        if (!res.body.empty()) {
            return httplib::Server::HandlerResponse::Unhandled;  // one of ours
        }
        const auto started = Clock::now();
        Problem p{res.status,
                  "http",
                  status_title(res.status),
                  "the server could not accept this HTTP request (status " +
                      std::to_string(res.status) + ")",
                  {},
                  {}};
        write(res, problem_reply(p));
        record(req.method, raw_path(req.target), "unmatched", false, res.status, started);
        return httplib::Server::HandlerResponse::Handled;
    };
    http_->set_error_handler(on_error);
}

void Server::serve(const httplib::Request& req, httplib::Response& res, std::string body,
                   std::optional<ApiError> body_error) {
    const auto started = Clock::now();
    Request r = to_request(req, std::move(body));
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
        if (body_error) {
            throw *body_error;
        }
        reply = match.route->handler(r);
    } catch (...) {
        reply = reply_for_exception(r.method, r.path);
    }
    write(res, reply);
    record(r.method, r.path, route, quiet, reply.status, started);
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
