#pragma once
// api::HttpServer: HTTP/1.1 (and HTTPS) in front of the API, on Boost.Beast.
// It is the only part of the API that reads sockets, and it is built for
// clients that never authenticate and may be hostile: everything one can make
// it hold is bounded.
//   - connections: `connections.total` and `connections.per_address`
//     (ConnectionTable: over the total, the longest-waiting idle connection is
//     evicted; over the per-address cap the newcomer is refused), and never
//     more than the file descriptors left after a reserve for netlink and
//     PostgreSQL;
//   - a request: request line + headers at most `max_header_bytes` and
//     `max_headers` fields (431), a body at most `max_body_bytes` (413), all
//     bodies being read together at most `max_body_bytes_in_flight` (503);
//     the whole request (and the TLS handshake before the first) must arrive
//     within `request_timeout` of the server starting to wait for it, and a
//     response must be taken within `write_timeout`;
//   - a body on a method that has none (GET, HEAD, OPTIONS, TRACE), or both
//     Content-Length and Transfer-Encoding: 400 and the connection is closed,
//     so such bytes are never read as a next request (request smuggling);
//   - requests waiting for a handler thread: at most `max_queued_requests` (503).
// Sockets are served by `io_threads` threads that never block; handlers run on
// `worker_threads` threads of their own (they wait on PostgreSQL).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "api/connection_table.hpp"
#include "api/request.hpp"
#include "metrics/metrics.hpp"

namespace ctquota::api {

struct HttpLimits {
    ConnectionLimits connections;
    std::size_t max_header_bytes = 16 * 1024;
    std::size_t max_headers = 100;
    std::uint64_t max_body_bytes = 1ull << 20;
    std::uint64_t max_body_bytes_in_flight = 64ull << 20;
    std::chrono::milliseconds request_timeout{10000};
    std::chrono::milliseconds write_timeout{10000};
    std::size_t max_queued_requests = 256;
    std::size_t max_requests_per_connection = 1000;
    std::size_t worker_threads = 8;
    std::size_t io_threads = 2;
    int listen_backlog = 256;
};

struct HttpServerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8460;
    std::string listen_text = "127.0.0.1:8460";  // as configured, for messages
    std::string tls_cert;                        // PEM files; both set: HTTPS only
    std::string tls_key;
    HttpLimits limits;
};

// A complete request, on a worker thread: the reply to send.
using RequestHandler = std::function<Reply(Request)>;
// A request the server refuses itself (malformed, too large, too slow to
// arrive, overloaded), on an I/O thread, so it must not block: the reply to
// send before closing. `partial` has what was read (maybe nothing).
using RefusalHandler =
    std::function<Reply(int status, const std::string& detail, const Request& partial)>;

// Descriptors kept free of connections: netlink sockets, PostgreSQL
// connections of every thread, log files, plan files, eventfds.
inline constexpr std::size_t kReservedFds = 128;

class HttpServer {
  public:
    // Throws std::runtime_error when the TLS files cannot be used.
    HttpServer(HttpServerOptions options, RequestHandler handler, RefusalHandler refusal,
               metrics::HttpConnectionMetrics& metrics);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds (throws std::runtime_error naming the address when it cannot) and
    // starts serving.
    void start();
    // Stops accepting, closes idle connections, lets requests in progress
    // answer (at most write_timeout), joins the threads.
    void stop();

    // The connection limit in force: the configured one, lowered to fit the
    // file descriptors this process may open (RLIMIT_NOFILE - kReservedFds).
    [[nodiscard]] std::size_t max_connections() const;

    class Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

// "a=1&b=x+y&c=%41" -> {a:1, b:"x y", c:"A"}; a broken escape stays as sent.
std::multimap<std::string, std::string> parse_query(std::string_view query);

}  // namespace ctquota::api
