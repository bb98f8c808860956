#include "notify/http_post.hpp"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <functional>
#include <memory>
#include <string_view>

namespace ctquota::notify {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {

struct Target {
    bool tls = false;
    std::string host;  // without brackets
    std::string port;
    std::string host_header;
    std::string path;
};

std::optional<Target> parse_url(std::string_view url) {
    Target t;
    if (url.starts_with("https://")) {
        t.tls = true;
        url.remove_prefix(8);
    } else if (url.starts_with("http://")) {
        url.remove_prefix(7);
    } else {
        return std::nullopt;
    }
    const auto slash = url.find_first_of("/?");
    std::string_view authority = url.substr(0, slash);
    t.path = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
    if (t.path.front() == '?') {
        t.path.insert(0, "/");
    }
    t.host_header = std::string(authority);
    t.port = t.tls ? "443" : "80";
    if (authority.starts_with("[")) {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) {
            return std::nullopt;
        }
        t.host = std::string(authority.substr(1, close - 1));
        if (close + 1 < authority.size() && authority[close + 1] == ':') {
            t.port = std::string(authority.substr(close + 2));
        }
    } else {
        const auto colon = authority.rfind(':');
        t.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) {
            t.port = std::string(authority.substr(colon + 1));
        }
    }
    if (t.host.empty() || t.port.empty()) {
        return std::nullopt;
    }
    return t;
}

// One exchange on a local io_context; every step ends in finish() or the next step.
template <class Stream>
class Exchange : public std::enable_shared_from_this<Exchange<Stream>> {
  public:
    Exchange(net::io_context& ioc, Stream stream, const Target& target, const PostRequest& request,
             const PostLimits& limits, PostResult& result)
        : resolver_(ioc),
          stream_(std::move(stream)),
          target_(target),
          url_(request.url),
          limits_(limits),
          result_(result) {
        request_.method(http::verb::post);
        request_.target(target.path);
        request_.version(11);
        request_.set(http::field::host, target.host_header);
        request_.set(http::field::content_type, request.content_type);
        request_.set(http::field::connection, "close");
        for (const auto& [name, value] : request.headers) {
            request_.set(name, value);
        }
        request_.body() = request.body;
        request_.prepare_payload();
        parser_.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    }

    void start() {
        resolver_.async_resolve(
            target_.host, target_.port,
            [self = this->shared_from_this()](beast::error_code ec, tcp::resolver::results_type r) {
                if (ec) {
                    return self->fail("cannot resolve", ec);
                }
                self->connect(r);
            });
    }

    void cancel() {
        resolver_.cancel();
        beast::error_code ignored;
        beast::get_lowest_layer(stream_).socket().close(ignored);
    }

  private:
    void connect(const tcp::resolver::results_type& endpoints) {
        beast::get_lowest_layer(stream_).async_connect(
            endpoints, [self = this->shared_from_this()](beast::error_code ec, const auto&) {
                if (ec) {
                    return self->fail("cannot connect to", ec, " (refused or unreachable)");
                }
                self->handshake();
            });
    }

    void handshake() {
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            send();
        } else {
            stream_.async_handshake(ssl::stream_base::client,
                                    [self = this->shared_from_this()](beast::error_code ec) {
                                        if (ec) {
                                            return self->fail("TLS handshake failed with", ec);
                                        }
                                        self->send();
                                    });
        }
    }

    void send() {
        http::async_write(stream_, request_,
                          [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec) {
                                  return self->fail("sending failed to", ec);
                              }
                              self->read();
                          });
    }

    void read() {
        http::async_read_header(
            stream_, buffer_, parser_,
            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
                    return self->fail("headers too large from", ec);
                }
                if (ec) {
                    return self->fail("no answer from", ec);
                }
                self->result_.status = static_cast<int>(self->parser_.get().result_int());
                self->result_.error.clear();
                self->cancel();  // the body is never read
            });
    }

    // "<what> <url><why>: <error>"
    void fail(const char* what, const beast::error_code& ec, const char* why = "") {
        if (ec != net::error::operation_aborted) {
            result_.error = std::string(what) + " " + url_ + why + ": " + ec.message();
        }
    }

    tcp::resolver resolver_;
    Stream stream_;
    Target target_;
    std::string url_;
    PostLimits limits_;
    PostResult& result_;
    http::request<http::string_body> request_;
    beast::flat_buffer buffer_;
    http::response_parser<http::empty_body> parser_;
};

ssl::context& client_tls() {
    static ssl::context ctx = [] {
        ssl::context c(ssl::context::tls_client);
        c.set_default_verify_paths();
        c.set_verify_mode(ssl::verify_peer);
        SSL_CTX_set_min_proto_version(c.native_handle(), TLS1_2_VERSION);
        return c;
    }();
    return ctx;
}

}  // namespace

PostResult http_post(const PostRequest& request, const PostLimits& limits) {
    PostResult result;
    const auto target = parse_url(request.url);
    if (!target) {
        result.error = "not an http:// or https:// URL";
        return result;
    }
    net::io_context ioc;
    std::function<void()> cancel;
    result.error = "no answer from " + request.url + " within the deadline of " +
                   std::to_string(limits.deadline.count()) + " ms";
    if (target->tls) {
        beast::ssl_stream<beast::tcp_stream> stream(ioc, client_tls());
        if (SSL_set_tlsext_host_name(stream.native_handle(), target->host.c_str()) != 1) {
            result.error = "cannot set the TLS server name";
            return result;
        }
        stream.set_verify_callback(ssl::host_name_verification(target->host));
        auto x = std::make_shared<Exchange<beast::ssl_stream<beast::tcp_stream>>>(
            ioc, std::move(stream), *target, request, limits, result);
        x->start();
        cancel = [x] { x->cancel(); };
    } else {
        auto x = std::make_shared<Exchange<beast::tcp_stream>>(ioc, beast::tcp_stream(ioc), *target,
                                                               request, limits, result);
        x->start();
        cancel = [x] { x->cancel(); };
    }
    // The one deadline: whatever is still pending then is cancelled.
    ioc.run_for(limits.deadline);
    if (!ioc.stopped()) {
        cancel();
        ioc.restart();
        ioc.run();
    }
    return result;
}

}  // namespace ctquota::notify
