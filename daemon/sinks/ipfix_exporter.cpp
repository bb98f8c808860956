#include "sinks/ipfix_exporter.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ctquota::sinks {
namespace {

constexpr auto kErrorLogEvery = std::chrono::minutes(1);
constexpr auto kFirstReconnect = std::chrono::seconds(1);
constexpr auto kMaxReconnect = std::chrono::seconds(30);
constexpr int kSendBuffer = 4 << 20;
constexpr int kIoTimeoutMs = 2000;

ipfix::SessionOptions session_options(const IpfixConfig& c) {
    ipfix::SessionOptions o;
    o.layout =
        c.layout == IpfixLayoutChoice::Biflow ? ipfix::Layout::Biflow : ipfix::Layout::PerDirection;
    o.observation_domain = c.observation_domain;
    o.max_message_bytes = c.max_message_bytes;
    o.template_refresh = c.template_refresh;
    o.template_every = c.template_every;
    o.refresh_templates = c.transport == IpfixTransport::Udp;
    return o;
}

// Sends all of `data`, waiting up to the I/O timeout for room; errno on failure.
int send_all(int fd, const std::vector<std::uint8_t>& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
        const auto n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN) {
            return errno;
        }
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, kIoTimeoutMs) != 1) {
            return ETIMEDOUT;
        }
    }
    return 0;
}

bool peer_closed(int fd) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace

struct IpfixExporter::Target {
    IpfixCollector collector;
    sockaddr_storage address{};
    socklen_t address_len = 0;
    bool tcp = false;
    int fd = -1;
    ipfix::Session session;
    std::chrono::steady_clock::time_point next_connect{};
    std::chrono::seconds reconnect_wait = kFirstReconnect;
    std::uint64_t errors = 0;  // since the last log line
    std::chrono::steady_clock::time_point next_error_log{};

    Target(IpfixCollector c, bool use_tcp, ipfix::SessionOptions options)
        : collector(std::move(c)), tcp(use_tcp), session(options) {}
    ~Target() { close_socket(); }
    void close_socket() {
        if (fd >= 0) {
            ::close(fd);
            fd = -1;
        }
    }
};

IpfixExporter::IpfixExporter(const IpfixConfig& config, const core::Clock& clock,
                             metrics::RecordMetrics& metrics)
    : clock_(clock), metrics_(metrics) {
    for (const auto& c : config.collectors) {
        auto t = std::make_unique<Target>(c, config.transport == IpfixTransport::Tcp,
                                          session_options(config));
        auto* v4 = reinterpret_cast<sockaddr_in*>(&t->address);
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&t->address);
        if (inet_pton(AF_INET, c.address.c_str(), &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(c.port);
            t->address_len = sizeof(sockaddr_in);
        } else if (inet_pton(AF_INET6, c.address.c_str(), &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(c.port);
            t->address_len = sizeof(sockaddr_in6);
        } else {
            throw std::invalid_argument("IPFIX collector '" + c.text + "' is not an IP address");
        }
        targets_.push_back(std::move(t));
    }
    spdlog::info("IPFIX: exporting to {} collector(s) over {}, observation domain {}",
                 targets_.size(), config.transport == IpfixTransport::Tcp ? "TCP" : "UDP",
                 config.observation_domain);
}

IpfixExporter::~IpfixExporter() = default;

void IpfixExporter::failed(Target& t, const char* what, int error) {
    ++metrics_.ipfix_send_errors;
    ++t.errors;
    const auto now = std::chrono::steady_clock::now();
    if (now < t.next_error_log) {
        return;
    }
    spdlog::warn(
        "IPFIX: collector {}: {} failed: {} ({} failures since the last report; its "
        "records are lost)",
        t.collector.text, what, std::strerror(error), t.errors);
    metrics_.ipfix.set_last_error(t.collector.text + ": " + what + ": " + std::strerror(error),
                                  std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
    t.errors = 0;
    t.next_error_log = now + kErrorLogEvery;
}

// Opens (UDP) or connects (TCP, not more often than its backoff allows) the
// collector's socket; false when it is not usable now. A TCP collector sends
// nothing: a readable socket means it closed the connection (or broke the
// protocol), found here before records are written into a dead stream.
bool IpfixExporter::connected(Target& t) {
    if (t.fd >= 0 && t.tcp && peer_closed(t.fd)) {
        spdlog::warn("IPFIX: collector {} closed the connection; reconnecting", t.collector.text);
        t.close_socket();
    }
    if (t.fd >= 0) {
        return true;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now < t.next_connect) {
        return false;
    }
    const int fd = ::socket(t.address.ss_family,
                            (t.tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        failed(t, "socket", errno);
        return false;
    }
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSendBuffer, sizeof kSendBuffer);
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&t.address), t.address_len);
    if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        rc = ::poll(&p, 1, kIoTimeoutMs) == 1 ? 0 : -1;
        int error = rc == 0 ? 0 : ETIMEDOUT;
        socklen_t len = sizeof error;
        if (rc == 0) {
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
        }
        errno = error;
        rc = error == 0 ? 0 : -1;
    }
    if (rc != 0) {
        failed(t, "connect", errno);
        ::close(fd);
        t.next_connect = now + t.reconnect_wait;
        t.reconnect_wait = std::min(t.reconnect_wait * 2, kMaxReconnect);
        return false;
    }
    t.fd = fd;
    t.reconnect_wait = kFirstReconnect;
    t.session.restart();  // a new transport session: sequence 0, templates first
    if (t.tcp) {
        spdlog::info("IPFIX: connected to collector {}", t.collector.text);
    }
    return true;
}

void IpfixExporter::send(Target& t, std::span<const FlowRecord* const> records) {
    if (!connected(t)) {
        return;
    }
    const auto templates_before = t.session.template_messages();
    const auto messages = t.session.encode(records, clock_.now());
    metrics_.ipfix_template_sets += t.session.template_messages() - templates_before;
    for (const auto& m : messages) {
        const int error = send_all(t.fd, m);
        if (error == 0) {
            ++metrics_.ipfix_messages;
            continue;
        }
        failed(t, "send", error);
        if (t.tcp) {
            t.close_socket();  // the stream is broken mid-message: a new session
            t.next_connect = std::chrono::steady_clock::now() + t.reconnect_wait;
            return;
        }
        // UDP: a refused datagram (the collector's port closed) loses this
        // message only; the sequence numbers tell the collector.
    }
}

void IpfixExporter::write(const std::vector<RecordBatch>& batches) {
    std::vector<const FlowRecord*> records;
    for (const auto& b : batches) {
        for (const auto& r : *b) {
            records.push_back(&r);
        }
    }
    for (auto& t : targets_) {
        send(*t, records);
    }
}

void IpfixExporter::tick() {
    for (auto& t : targets_) {
        send(*t, {});
    }
}

}  // namespace ctquota::sinks
