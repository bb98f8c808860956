#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <array>
#include <pqxx/pqxx>
#include <system_error>

#include "store/policy_store.hpp"

namespace ctquota::store {
namespace {

constexpr auto kLinger = std::chrono::milliseconds(5);  // wait for the rest of a burst
constexpr std::size_t kMaxBatch = 200'000;              // notifications returned at most

}  // namespace

struct PolicyListener::Impl {
    class Receiver final : public pqxx::notification_receiver {
      public:
        Receiver(pqxx::connection& conn, const char* channel, std::vector<std::string>& sink)
            : pqxx::notification_receiver(conn, channel), sink_(sink) {}
        void operator()(const std::string& payload, int /*backend_pid*/) override {
            sink_.push_back(payload);
        }

      private:
        std::vector<std::string>& sink_;
    };

    ListenerNotifications received;
    std::unique_ptr<pqxx::connection> conn;
    std::unique_ptr<Receiver> receiver;        // destroyed before conn
    std::unique_ptr<Receiver> usage_receiver;  // likewise

    [[nodiscard]] std::size_t pending() const {
        return received.policy.size() + received.usage.size();
    }
    void disconnect() {
        receiver.reset();
        usage_receiver.reset();
        conn.reset();
    }
    int wake_fd = -1;  // eventfd: wake() ends a wait early

    // Until a notification arrives on the connection, wake() or the timeout.
    void await(std::chrono::milliseconds timeout) const {
        std::array<pollfd, 2> fds{pollfd{conn->sock(), POLLIN, 0}, pollfd{wake_fd, POLLIN, 0}};
        if (::poll(fds.data(), fds.size(), static_cast<int>(timeout.count())) > 0 &&
            (fds[1].revents & POLLIN) != 0) {
            std::uint64_t n = 0;
            [[maybe_unused]] const auto r = ::read(wake_fd, &n, sizeof n);
        }
    }
};

PolicyListener::PolicyListener(std::string url)
    : url_(std::move(url)), impl_(std::make_unique<Impl>()) {
    impl_->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (impl_->wake_fd < 0) {
        throw std::system_error(errno, std::generic_category(), "eventfd");
    }
}

PolicyListener::~PolicyListener() {
    impl_->disconnect();
    ::close(impl_->wake_fd);
}

void PolicyListener::wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto r = ::write(impl_->wake_fd, &one, sizeof one);
}

ListenerNotifications PolicyListener::wait(std::chrono::milliseconds timeout) {
    ListenerNotifications out;
    auto& in = impl_->received;
    try {
        if (!impl_->conn) {
            impl_->conn = std::make_unique<pqxx::connection>(url_);
            impl_->receiver =
                std::make_unique<Impl::Receiver>(*impl_->conn, "ctquota_policy", in.policy);
            impl_->usage_receiver =
                std::make_unique<Impl::Receiver>(*impl_->conn, "ctquota_usage", in.usage);
            impl_->conn->get_notifs();     // runs the LISTENs
            out.policy.emplace_back("*");  // whatever was sent while we were away
        }
        if (impl_->conn->get_notifs() == 0) {  // none buffered yet: wait for one
            impl_->await(timeout);
            impl_->conn->get_notifs();
        }
        // One committed change of many subscribers arrives over several socket
        // reads: take all of it, so that the caller makes one round of it (one
        // kernel transaction instead of dozens).
        while (impl_->pending() > 0 && impl_->pending() < kMaxBatch) {
            const auto before = impl_->pending();
            impl_->await(kLinger);
            impl_->conn->get_notifs();
            if (impl_->pending() == before) {
                break;
            }
        }
    } catch (const std::exception& e) {
        impl_->disconnect();
        Database redactor(url_);
        throw DatabaseError("listening for policy changes: " + redactor.redact(e.what()));
    }
    out.policy.insert(out.policy.end(), in.policy.begin(), in.policy.end());
    out.usage = std::move(in.usage);
    in.policy.clear();
    in.usage.clear();
    return out;
}

}  // namespace ctquota::store
