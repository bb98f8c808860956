#include "api/http_server.hpp"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "api/router.hpp"
#include "api/worker_pool.hpp"

namespace ctquota::api {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

namespace {

// After a refusal the client may still be sending (a body over the limit):
// read and drop up to this much, for this long, so it gets to read the answer.
constexpr std::uint64_t kDrainBodies = 4;  // times max_body_bytes
constexpr auto kDrainTime = std::chrono::seconds(2);
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);
constexpr auto kRefusalLogEvery = std::chrono::seconds(10);
// Read buffer: the header limit plus room for body reads of Beast's usual size.
constexpr std::size_t kBodyReadRoom = 64 * 1024;

bool is_bodyless(http::verb v) {
    return v == http::verb::get || v == http::verb::head || v == http::verb::options ||
           v == http::verb::trace;
}

// Boost 1.74's string_view is its own type.
std::string_view sv(beast::string_view s) {
    return {s.data(), s.size()};
}

bool is_http_error(const beast::error_code& ec) {
    return ec.category() == http::make_error_code(http::error::bad_method).category();
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::size_t descriptor_budget() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return SIZE_MAX;
    }
    return rl.rlim_cur > kReservedFds ? static_cast<std::size_t>(rl.rlim_cur) - kReservedFds : 0;
}

std::unique_ptr<ssl::context> make_tls(const HttpServerOptions& o) {
    if (o.tls_cert.empty()) {
        return nullptr;
    }
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    try {
        ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                         ssl::context::no_sslv3 | ssl::context::single_dh_use);
        ctx->use_certificate_chain_file(o.tls_cert);
        ctx->use_private_key_file(o.tls_key, ssl::context::pem);
        if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
            throw std::runtime_error("key does not match");
        }
    } catch (const std::exception&) {
        throw std::runtime_error("api.tls_cert, api.tls_key: cannot use '" + o.tls_cert +
                                 "' and '" + o.tls_key +
                                 "' (PEM certificate and its unencrypted private key expected)");
    }
    if (SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION) != 1) {
        throw std::runtime_error("api: cannot require TLS 1.2 or newer");
    }
    return ctx;
}

}  // namespace

std::multimap<std::string, std::string> parse_query(std::string_view query) {
    std::multimap<std::string, std::string> out;
    auto decode = [](std::string_view raw) {
        std::string text(raw);
        std::replace(text.begin(), text.end(), '+', ' ');
        return percent_decode(text).value_or(text);
    };
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty()) {
            continue;
        }
        const auto eq = pair.find('=');
        out.emplace(decode(pair.substr(0, eq)),
                    eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1)));
    }
    return out;
}

class Session;

class HttpServer::Impl {
  public:
    Impl(HttpServerOptions options, RequestHandler handler, RefusalHandler refusal,
         metrics::HttpConnectionMetrics& metrics)
        : options_(std::move(options)),
          handler_(std::move(handler)),
          refusal_(std::move(refusal)),
          metrics_(metrics),
          tls_(make_tls(options_)),
          limits_(effective_limits(options_.limits)),
          table_(limits_.connections),
          acceptor_(net::make_strand(ioc_)),
          accept_retry_(acceptor_.get_executor()) {}

    void start();
    void stop();
    void do_accept();
    void on_accept(beast::error_code ec, tcp::socket socket);
    void refuse_connection(tcp::socket& socket, Admission why, const std::string& address);

    // Body bytes being read by all connections: reserve before reading, give back after.
    bool reserve_body(std::uint64_t n);
    void release_body(std::uint64_t n) { body_in_flight_ -= n; }
    void forget(ConnectionId id);

    HttpServerOptions options_;
    RequestHandler handler_;
    RefusalHandler refusal_;
    metrics::HttpConnectionMetrics& metrics_;
    std::unique_ptr<ssl::context> tls_;
    HttpLimits limits_;
    ConnectionTable table_;
    std::atomic<std::uint64_t> body_in_flight_{0};
    std::atomic<bool> stopping_{false};
    SteadyClock::time_point next_refusal_log_{};
    // The table above and the session map outlive the io_context: sessions
    // still held by its handlers release themselves when it is destroyed.
    std::mutex sessions_mu_;
    std::unordered_map<ConnectionId, std::weak_ptr<Session>> sessions_;
    net::io_context ioc_;
    tcp::acceptor acceptor_;
    net::steady_timer accept_retry_;
    std::optional<WorkerPool> workers_;  // jobs post back to the io_context
    std::vector<std::thread> io_threads_;

  private:
    static HttpLimits effective_limits(HttpLimits limits) {
        const auto budget = descriptor_budget();
        if (limits.connections.total > budget) {
            spdlog::warn(
                "api: max_connections {} lowered to {}: RLIMIT_NOFILE leaves no more after "
                "keeping {} descriptors for netlink, PostgreSQL and files (raise LimitNOFILE)",
                limits.connections.total, budget, kReservedFds);
            limits.connections.total = budget;
        }
        return limits;
    }
};

// One connection, plain or TLS; lives as long as an operation on it is pending.
class Session : public std::enable_shared_from_this<Session> {
  public:
    virtual ~Session() = default;
    virtual void start() = 0;
    // From any thread: close the connection (its handlers end it).
    virtual void close_from_outside() = 0;
};

namespace {

template <class Stream>
class HttpSession final : public Session {
  public:
    HttpSession(HttpServer::Impl& server, Stream stream, ConnectionId id, std::string address)
        : server_(server),
          stream_(std::move(stream)),
          buffer_(server.limits_.max_header_bytes + kBodyReadRoom),
          id_(id),
          address_(std::move(address)) {
        ++server_.metrics_.open;
    }

    ~HttpSession() override {
        server_.release_body(reserved_body_);
        server_.table_.release(id_);
        server_.forget(id_);
        --server_.metrics_.open;
    }

    void start() override {
        net::dispatch(stream_.get_executor(), [self = shared()] { self->begin(); });
    }

    void close_from_outside() override {
        net::post(stream_.get_executor(), [self = shared()] {
            beast::error_code ignored;
            self->tcp().socket().close(ignored);
        });
    }

  private:
    static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

    std::shared_ptr<HttpSession> shared() {
        return std::static_pointer_cast<HttpSession>(shared_from_this());
    }
    beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }
    const HttpLimits& limits() const { return server_.limits_; }

    void begin() {
        tcp().expires_after(limits().request_timeout);
        if constexpr (kTls) {
            stream_.async_handshake(ssl::stream_base::server,
                                    [self = shared()](beast::error_code ec) {
                                        if (!ec) {
                                            self->read_request();
                                        } else if (ec == beast::error::timeout) {
                                            ++self->server_.metrics_.timed_out;
                                        }
                                    });
        } else {
            read_request();
        }
    }

    void read_request() {
        if (server_.stopping_) {
            linger_and_close();
            return;
        }
        server_.table_.waiting(id_, SteadyClock::now());
        tcp().expires_after(limits().request_timeout);
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(limits().max_header_bytes));
        parser_->body_limit(limits().max_body_bytes);
        http::async_read_header(
            stream_, buffer_, *parser_,
            [self = shared()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    void on_header(beast::error_code ec) {
        if (ec) {
            on_read_error(ec);
            return;
        }
        if (const auto refusal = check_header()) {
            refuse(refusal->first, refusal->second);
            return;
        }
        if (parser_->is_done()) {
            dispatch();
            return;
        }
        const auto& req = parser_->get();
        if (lower(sv(req[http::field::expect])) == "100-continue") {
            continue_then_read_body();
        } else {
            read_body();
        }
    }

    // Status and detail of a refusal, or nothing when the header is acceptable.
    std::optional<std::pair<int, std::string>> check_header() {
        const auto& req = parser_->get();
        const auto fields = static_cast<std::size_t>(std::distance(req.begin(), req.end()));
        if (fields > limits().max_headers) {
            return std::pair{
                431, "more than " + std::to_string(limits().max_headers) + " header fields"};
        }
        const bool has_length = req.find(http::field::content_length) != req.end();
        const bool has_encoding = req.find(http::field::transfer_encoding) != req.end();
        if (has_length && has_encoding) {
            return std::pair{400,
                             "both Content-Length and Transfer-Encoding: refused, the "
                             "connection is closed (request smuggling)"};
        }
        // Only "chunked" (the one coding we decode); anything else leaves the
        // body's end to guesswork: refused like the rest (RFC 9112 6.3).
        if (has_encoding && lower(sv(req[http::field::transfer_encoding])) != "chunked") {
            return std::pair{400,
                             "Transfer-Encoding other than 'chunked': refused, the "
                             "connection is closed"};
        }
        const auto length = parser_->content_length();
        const bool has_body = has_encoding || (length && *length > 0);
        if (has_body && is_bodyless(req.method())) {
            return std::pair{400, std::string(sv(req.method_string())) +
                                      " carries no body: refused, the connection is closed"};
        }
        if (!has_body) {
            return std::nullopt;
        }
        if (length && *length > limits().max_body_bytes) {
            return std::pair{413, "the body is larger than " +
                                      std::to_string(limits().max_body_bytes) + " bytes"};
        }
        const auto need = length.value_or(limits().max_body_bytes);
        if (!server_.reserve_body(need)) {
            ++server_.metrics_.refused_overload;
            return std::pair{503, "too many request bodies being received; retry shortly"};
        }
        reserved_body_ = need;
        return std::nullopt;
    }

    void continue_then_read_body() {
        auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
        http::async_write(stream_, *cont,
                          [self = shared(), cont](beast::error_code ec, std::size_t) {
                              if (!ec) {
                                  self->read_body();
                              }
                          });
    }

    void read_body() {
        http::async_read(stream_, buffer_, *parser_,
                         [self = shared()](beast::error_code ec, std::size_t) {
                             if (ec) {
                                 self->on_read_error(ec);
                             } else {
                                 self->dispatch();
                             }
                         });
    }

    void on_read_error(beast::error_code ec) {
        if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
            refuse(431, "the request line and headers are larger than " +
                            std::to_string(limits().max_header_bytes) + " bytes");
        } else if (ec == http::error::body_limit) {
            refuse(413,
                   "the body is larger than " + std::to_string(limits().max_body_bytes) + " bytes");
        } else if (ec == beast::error::timeout) {
            // Idle keep-alive connections end here too; only a started request counts.
            if (buffer_.size() > 0 || (parser_ && parser_->got_some())) {
                ++server_.metrics_.timed_out;
            }
        } else if (ec == http::error::end_of_stream || ec == http::error::partial_message) {
            // The client closed (maybe mid-request): nobody to answer.
        } else if (is_http_error(ec)) {
            refuse(400, "malformed HTTP request (" + ec.message() + ")");
        }
        // Anything else (closed by the peer, evicted, reset): the connection just ends.
        spdlog::trace("http: connection from {} ends: {}", address_, ec.message());
    }

    Request to_request() {
        auto& msg = parser_->get();
        Request r;
        r.method = std::string(sv(msg.method_string()));
        const std::string_view target = sv(msg.target());
        const auto q = target.find('?');
        r.path = std::string(target.substr(0, q));
        if (q != std::string_view::npos) {
            r.query = parse_query(target.substr(q + 1));
        }
        for (const auto& field : msg) {
            r.headers.emplace(lower(sv(field.name_string())), std::string(sv(field.value())));
        }
        r.body = std::move(msg.body());
        r.client_address = address_;
        return r;
    }

    void dispatch() {
        server_.table_.busy(id_);
        keep_alive_ = parser_->get().keep_alive() && !server_.stopping_ &&
                      ++served_ < limits().max_requests_per_connection;
        head_ = parser_->get().method() == http::verb::head;
        auto job = [self = shared(), request = to_request()]() mutable {
            Reply reply;
            try {
                reply = self->server_.handler_(std::move(request));
            } catch (const std::exception& e) {
                spdlog::error("http: handler failed: {}", e.what());
                reply = Reply{500, "", "", {}};
            }
            net::post(self->stream_.get_executor(), [self, reply = std::move(reply)]() mutable {
                self->write(std::move(reply));
            });
        };
        if (!server_.workers_->try_submit(std::move(job))) {
            ++server_.metrics_.refused_overload;
            refuse(503, "too many requests waiting; retry shortly");
        }
    }

    void refuse(int status, const std::string& detail) {
        server_.table_.busy(id_, false);
        Request partial;
        if (parser_ && parser_->is_header_done()) {
            const auto target = sv(parser_->get().target());
            partial.method = std::string(sv(parser_->get().method_string()));
            partial.path = std::string(target.substr(0, target.find('?')));
        }
        partial.client_address = address_;
        keep_alive_ = false;
        head_ = false;
        Reply reply = server_.refusal_(status, detail, partial);
        reply.headers.emplace_back("Connection", "close");
        write(std::move(reply));
    }

    void write(Reply reply) {
        server_.release_body(reserved_body_);
        reserved_body_ = 0;
        response_ = {};
        response_.version(11);
        response_.result(static_cast<unsigned>(reply.status));
        for (const auto& [name, value] : reply.headers) {
            response_.insert(name, value);
        }
        if (!reply.content_type.empty()) {
            response_.set(http::field::content_type, reply.content_type);
        }
        response_.body() = std::move(reply.body);
        response_.keep_alive(keep_alive_);
        response_.prepare_payload();
        if (head_) {
            response_.body().clear();  // Content-Length stays the GET's
        }
        tcp().expires_after(limits().write_timeout);
        http::async_write(stream_, response_, [self = shared()](beast::error_code ec, std::size_t) {
            self->on_written(ec);
        });
    }

    void on_written(beast::error_code ec) {
        if (ec) {
            spdlog::trace("http: writing to {} failed: {}", address_, ec.message());
            return;
        }
        if (keep_alive_ && !server_.stopping_) {
            read_request();
        } else {
            linger_and_close();
        }
    }

    // After a response that ends the connection: stop sending, read (and
    // drop) what the client is still sending for a moment, then close.
    // Closing with unread bytes would reset the connection and could destroy
    // the response before the client reads it. Evictable meanwhile.
    void linger_and_close() {
        beast::error_code ignored;
        if constexpr (kTls) {
            tcp().socket().close(ignored);
        } else {
            server_.table_.waiting(id_, SteadyClock::now());
            tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
            drain_left_ = limits().max_body_bytes * kDrainBodies + limits().max_header_bytes;
            tcp().expires_after(kDrainTime);
            drain();
        }
    }

    void drain() {
        buffer_.clear();
        tcp().async_read_some(buffer_.prepare(std::min<std::uint64_t>(drain_left_, 16384)),
                              [self = shared()](beast::error_code ec, std::size_t n) {
                                  if (ec || n >= self->drain_left_) {
                                      beast::error_code ignored;
                                      self->tcp().socket().close(ignored);
                                      return;
                                  }
                                  self->drain_left_ -= n;
                                  self->drain();
                              });
    }

    HttpServer::Impl& server_;
    Stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> response_;
    ConnectionId id_;
    std::string address_;
    std::uint64_t reserved_body_ = 0;
    std::size_t served_ = 0;
    std::uint64_t drain_left_ = 0;
    bool keep_alive_ = false;
    bool head_ = false;
};

}  // namespace

bool HttpServer::Impl::reserve_body(std::uint64_t n) {
    auto current = body_in_flight_.load();
    do {
        if (current + n > limits_.max_body_bytes_in_flight) {
            return false;
        }
    } while (!body_in_flight_.compare_exchange_weak(current, current + n));
    return true;
}

void HttpServer::Impl::forget(ConnectionId id) {
    std::lock_guard lock(sessions_mu_);
    sessions_.erase(id);
}

void HttpServer::Impl::start() {
    beast::error_code ec;
    const auto address = net::ip::make_address(options_.host, ec);
    if (ec) {
        throw std::runtime_error("api.listen: '" + options_.host + "' is not an IP address");
    }
    const tcp::endpoint endpoint(address, options_.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) {
        acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
        acceptor_.bind(endpoint, ec);
    }
    if (!ec) {
        acceptor_.listen(options_.limits.listen_backlog, ec);
    }
    if (ec) {
        throw std::runtime_error("api.listen: cannot listen on " + options_.listen_text + ": " +
                                 ec.message());
    }
    workers_.emplace(limits_.worker_threads, limits_.max_queued_requests);
    net::dispatch(acceptor_.get_executor(), [this] { do_accept(); });
    for (std::size_t i = 0; i < std::max<std::size_t>(1, limits_.io_threads); ++i) {
        io_threads_.emplace_back([this] { ioc_.run(); });
    }
}

void HttpServer::Impl::do_accept() {
    acceptor_.async_accept(
        net::make_strand(ioc_),
        [this](beast::error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
}

void HttpServer::Impl::on_accept(beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || stopping_) {
        return;
    }
    if (ec) {
        // EMFILE and friends: wait instead of spinning on a queue we cannot take from.
        ++metrics_.accept_errors;
        const auto now = SteadyClock::now();
        if (now >= next_refusal_log_) {
            spdlog::warn("api: accept failed: {}", ec.message());
            next_refusal_log_ = now + kRefusalLogEvery;
        }
        accept_retry_.expires_after(kAcceptRetry);
        accept_retry_.async_wait([this](beast::error_code wait_ec) {
            if (!wait_ec && !stopping_) {
                do_accept();
            }
        });
        return;
    }
    beast::error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec);
    std::string address = peer_ec ? std::string("?") : peer.address().to_string();
    const auto admitted = table_.admit(address, SteadyClock::now());
    if (admitted.admission != Admission::Admitted) {
        refuse_connection(socket, admitted.admission, address);
        do_accept();
        return;
    }
    ++metrics_.accepted;
    if (admitted.evicts) {
        ++metrics_.evicted;
        std::shared_ptr<Session> victim;
        {
            std::lock_guard lock(sessions_mu_);
            const auto it = sessions_.find(*admitted.evicts);
            if (it != sessions_.end()) {
                victim = it->second.lock();
            }
        }
        if (victim) {
            victim->close_from_outside();
        }
    }
    socket.set_option(tcp::no_delay(true), peer_ec);
    std::shared_ptr<Session> session;
    if (tls_) {
        session = std::make_shared<HttpSession<beast::ssl_stream<beast::tcp_stream>>>(
            *this, beast::ssl_stream<beast::tcp_stream>(std::move(socket), *tls_), admitted.id,
            std::move(address));
    } else {
        session = std::make_shared<HttpSession<beast::tcp_stream>>(
            *this, beast::tcp_stream(std::move(socket)), admitted.id, std::move(address));
    }
    {
        std::lock_guard lock(sessions_mu_);
        sessions_.emplace(admitted.id, session);
    }
    session->start();
    do_accept();
}

void HttpServer::Impl::refuse_connection(tcp::socket& socket, Admission why,
                                         const std::string& address) {
    auto& counter =
        why == Admission::RefusedAddress ? metrics_.refused_address : metrics_.refused_full;
    ++counter;
    if (!tls_) {
        // Best effort, never waiting: a fresh socket's buffer takes these bytes.
        static constexpr std::string_view kBusy =
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
            "Content-Length: 0\r\n\r\n";
        beast::error_code ignored;
        socket.non_blocking(true, ignored);
        socket.write_some(net::buffer(kBusy.data(), kBusy.size()), ignored);
    }
    beast::error_code ignored;
    socket.close(ignored);
    const auto now = SteadyClock::now();
    if (now >= next_refusal_log_) {
        spdlog::warn(
            "api: connection from {} refused: {} (refused so far: {} over the per-address "
            "cap of {}, {} with all {} connections busy)",
            address,
            why == Admission::RefusedAddress ? "too many connections from this address"
                                             : "every connection busy",
            metrics_.refused_address.load(), limits_.connections.per_address,
            metrics_.refused_full.load(), limits_.connections.total);
        next_refusal_log_ = now + kRefusalLogEvery;
    }
}

void HttpServer::Impl::stop() {
    if (io_threads_.empty()) {
        return;
    }
    stopping_ = true;
    net::post(acceptor_.get_executor(), [this] {
        beast::error_code ignored;
        acceptor_.close(ignored);
        accept_retry_.cancel();
    });
    // Waiting connections close now; those with a request in hand answer it
    // first and then close (they see stopping_).
    for (const auto id : table_.waiting_ids()) {
        std::shared_ptr<Session> s;
        {
            std::lock_guard lock(sessions_mu_);
            const auto it = sessions_.find(id);
            s = it == sessions_.end() ? nullptr : it->second.lock();
        }
        if (s) {
            s->close_from_outside();
        }
    }
    const auto deadline = SteadyClock::now() + limits_.write_timeout;
    workers_->stop();
    while (table_.open() > 0 && SteadyClock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ioc_.stop();
    for (auto& t : io_threads_) {
        t.join();
    }
    io_threads_.clear();
}

HttpServer::HttpServer(HttpServerOptions options, RequestHandler handler, RefusalHandler refusal,
                       metrics::HttpConnectionMetrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler), std::move(refusal),
                                   metrics)) {}

HttpServer::~HttpServer() {
    stop();
}

void HttpServer::start() {
    impl_->start();
}

void HttpServer::stop() {
    impl_->stop();
}

std::size_t HttpServer::max_connections() const {
    return impl_->limits_.connections.total;
}

}  // namespace ctquota::api
