#pragma once
// api::Server: the REST API: routing, authentication, problem bodies, the
// request log, over api::HttpServer (Boost.Beast, bounded against hostile
// clients: see http_server.hpp). It runs on threads of its own, borrows its
// own database connections, and reads the daemon's state only through
// Metrics, so the netlink readers and the flusher never wait for HTTP.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "api/auth.hpp"
#include "api/auth_failure_log.hpp"
#include "api/db_pool.hpp"
#include "api/http_server.hpp"
#include "api/problem.hpp"
#include "api/routes.hpp"
#include "core/binding_rules.hpp"
#include "core/clock.hpp"
#include "metrics/metrics.hpp"

namespace ctquota::api {

struct ServerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8460;
    std::string listen_text = "127.0.0.1:8460";  // as configured, for messages
    std::string database_url;
    // Connections, sizes, deadlines and queues; limits.worker_threads is also
    // the number of database connections.
    HttpLimits limits;
    std::chrono::seconds token_cache_ttl{10};
    // Every statement of an API request: a runaway query gives the client an
    // error instead of holding one of the few connections for ever.
    std::chrono::milliseconds statement_timeout{5000};
    std::string tls_cert;  // PEM files; both set: HTTPS only, neither: plain HTTP
    std::string tls_key;
    std::filesystem::path web_dir;     // the web page's files; empty: no page
    core::BindingRules binding_rules;  // [subscribers]: what may be bound
    // 401s: the first per client address in each interval is logged, the rest summed up.
    std::chrono::nanoseconds auth_failure_log_interval = std::chrono::minutes(1);
};

class Server {
  public:
    Server(ServerOptions options, metrics::Metrics& metrics, const core::Clock& clock);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds the listening socket (throws std::runtime_error naming the address
    // when it cannot) and starts serving on a thread of its own.
    void start();
    // Stops accepting, lets requests in progress finish, joins the threads.
    void stop();

  private:
    // One request, start to finish: route, authenticate, handle, count, log.
    Reply serve(Request r);
    // A request the HTTP layer refused before routing: a problem body, counted and logged.
    Reply refused(int status, const std::string& detail, const Request& partial);
    Principal authenticate(const Request& r, Access access);
    Reply reply_for_exception(const std::string& method, const std::string& path);
    void record(const std::string& method, const std::string& path, const std::string& route,
                bool quiet, int status, std::chrono::steady_clock::time_point started);

    ServerOptions options_;
    metrics::Metrics& metrics_;
    DatabasePool pool_;
    Services services_;
    Authenticator auth_;
    AuthFailureLog auth_failures_;
    Router router_;
    std::unique_ptr<HttpServer> http_;
    bool started_ = false;
};

}  // namespace ctquota::api
