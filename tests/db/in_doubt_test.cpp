// A flush whose COMMIT reached the server but whose answer never came back
// (the connection cut in between, by a proxy in the test), while the database
// cannot be asked at once: the flusher must hold the batch and ask later,
// never merge it into the next flush (which would count it twice).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "../unit/test_helpers.hpp"
#include "db_fixture.hpp"
#include "metrics/metrics.hpp"
#include "runtime/accountant.hpp"
#include "runtime/flusher.hpp"

using namespace ctquota;
using ctquota::dbtest::ScratchDatabase;

namespace {

// TCP proxy 127.0.0.1:<port()> -> 127.0.0.1:<upstream>. cut_after_commit():
// the next COMMIT is forwarded, its answer is not, both sides are closed, and
// from then on new connections are refused (closed at once) until reopen().
class CuttingProxy {
  public:
    explicit CuttingProxy(std::uint16_t upstream) : upstream_(upstream) {
        listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(listen(listen_fd_, 16) == 0);
        socklen_t len = sizeof a;
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        threads_.emplace_back([this] { accept_loop(); });
    }
    ~CuttingProxy() {
        stop_ = true;
        {
            std::lock_guard lock(mu_);
            for (int fd : open_) {
                shutdown(fd, SHUT_RDWR);
            }
        }
        for (auto& t : threads_) {
            t.join();
        }
        close(listen_fd_);
    }
    CuttingProxy(const CuttingProxy&) = delete;
    CuttingProxy& operator=(const CuttingProxy&) = delete;

    [[nodiscard]] std::uint16_t port() const { return port_; }
    void cut_after_commit() { cut_armed_ = true; }
    void reopen() { refuse_ = false; }
    [[nodiscard]] int cuts() const { return cuts_; }

  private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{listen_fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) {
                continue;
            }
            const int client = accept(listen_fd_, nullptr, nullptr);
            if (client < 0) {
                continue;
            }
            if (refuse_) {
                close(client);
                continue;
            }
            const int server = connect_upstream();
            std::lock_guard lock(mu_);
            open_.push_back(client);
            open_.push_back(server);
            auto committed = std::make_shared<std::atomic<bool>>(false);
            threads_.emplace_back([=, this] { pump(client, server, committed, true); });
            threads_.emplace_back([=, this] { pump(server, client, committed, false); });
        }
    }
    int connect_upstream() const {
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(upstream_);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        return fd;
    }
    // Client -> server notices the COMMIT; server -> client then drops its answer.
    void pump(int from, int to, const std::shared_ptr<std::atomic<bool>>& committed,
              bool from_client) {
        std::vector<char> buf(65536);
        while (true) {
            const ssize_t n = read(from, buf.data(), buf.size());
            if (n <= 0) {
                break;
            }
            if (from_client && cut_armed_ &&
                memmem(buf.data(), static_cast<std::size_t>(n), "COMMIT", 6) != nullptr) {
                cut_armed_ = false;
                *committed = true;
            } else if (!from_client && *committed) {
                refuse_ = true;
                ++cuts_;
                break;  // the COMMIT's answer never reaches the client
            }
            // MSG_NOSIGNAL: the other side may be gone; that ends the pump, not the test.
            if (send(to, buf.data(), static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) {
                break;
            }
        }
        shutdown(from, SHUT_RDWR);
        shutdown(to, SHUT_RDWR);
    }

    std::uint16_t upstream_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<bool> cut_armed_{false};
    std::atomic<bool> refuse_{false};
    std::atomic<int> cuts_{0};
    std::mutex mu_;
    std::vector<int> open_;
    std::vector<std::thread> threads_;
};

std::uint16_t server_port(const std::string& url) {
    std::smatch m;
    REQUIRE(std::regex_search(url, m, std::regex("port=([0-9]+)")));
    return static_cast<std::uint16_t>(std::stoi(m[1]));
}

}  // namespace

TEST_CASE("a flush whose COMMIT answer is lost is held until resolved, never counted twice") {
    ScratchDatabase scratch;
    CuttingProxy proxy(server_port(dbtest::base_url()));
    const std::string url = "host=127.0.0.1 port=" + std::to_string(proxy.port()) +
                            " user=postgres dbname=" + scratch.name();
    store::Database db(url);
    core::SystemClock clock;
    metrics::Metrics metrics;
    runtime::SampleQueue queue(1000);
    runtime::Accountant accountant(clock, queue, metrics);
    runtime::AccountingConfig config;
    config.gateway_id = "gw-doubt";
    runtime::Flusher flusher(config, clock, db, accountant, metrics);
    // What the policy engine is told: a batch resolved after its answer was
    // lost says nothing of when it was taken (leases wait for a flush that
    // began after a quota ran out); the empty flush after it does.
    std::mutex calls_mu;
    std::vector<bool> calls_with_time;
    flusher.on_flushed([&](const auto&, std::chrono::steady_clock::time_point taken) {
        std::lock_guard lock(calls_mu);
        calls_with_time.push_back(taken != std::chrono::steady_clock::time_point{});
    });

    // One short flow nobody owns: its bytes land in usage_unattributed.
    accountant.start();
    std::vector<core::FlowSample> samples{
        test::destroy(test::flow(1, "100.64.9.9", 4000), 1234, 3, 4321, 5)};
    REQUIRE(queue.push_wait(
        runtime::QueueItem{runtime::QueueItem::Kind::Samples, std::move(samples), 0, false},
        runtime::SampleQueue::Lane::Events));
    queue.close();
    accountant.join();

    // The COMMIT reaches the server, its answer does not, and for a while
    // nobody can ask the server whether it committed.
    proxy.cut_after_commit();
    std::thread reopen([&proxy] {
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (proxy.cuts() == 0 && std::chrono::steady_clock::now() < give_up) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling the cut
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the outage itself
        proxy.reopen();
    });
    const bool flushed = flusher.stop_and_flush(std::chrono::seconds(20));
    reopen.join();

    CHECK(flushed);
    CHECK(proxy.cuts() == 1);
    CHECK(metrics.flushes_in_doubt.load() == 1);
    CHECK(scratch.scalar("SELECT coalesce(sum(up_bytes), 0) FROM usage_unattributed") == 1234);
    CHECK(scratch.scalar("SELECT coalesce(sum(down_bytes), 0) FROM usage_unattributed") == 4321);
    CHECK(scratch.scalar("SELECT coalesce(sum(up_packets), 0) FROM usage_unattributed") == 3);
    std::lock_guard lock(calls_mu);
    REQUIRE(calls_with_time.size() >= 2);
    CHECK_FALSE(calls_with_time.front());  // the batch in doubt, resolved as committed
    CHECK(calls_with_time.back());         // the empty flush that ended it
}
