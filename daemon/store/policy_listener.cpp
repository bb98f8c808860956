#include <spdlog/spdlog.h>

#include <pqxx/pqxx>

#include "store/policy_store.hpp"

namespace ctquota::store {

struct PolicyListener::Impl {
    class Receiver final : public pqxx::notification_receiver {
      public:
        Receiver(pqxx::connection& conn, std::vector<std::string>& sink)
            : pqxx::notification_receiver(conn, "ctquota_policy"), sink_(sink) {}
        void operator()(const std::string& payload, int /*backend_pid*/) override {
            sink_.push_back(payload);
        }

      private:
        std::vector<std::string>& sink_;
    };

    std::vector<std::string> received;
    std::unique_ptr<pqxx::connection> conn;
    std::unique_ptr<Receiver> receiver;  // destroyed before conn
};

PolicyListener::PolicyListener(std::string url)
    : url_(std::move(url)), impl_(std::make_unique<Impl>()) {}

PolicyListener::~PolicyListener() {
    impl_->receiver.reset();
    impl_->conn.reset();
}

std::vector<std::string> PolicyListener::wait(std::chrono::milliseconds timeout) {
    std::vector<std::string> out;
    try {
        if (!impl_->conn) {
            impl_->conn = std::make_unique<pqxx::connection>(url_);
            impl_->receiver = std::make_unique<Impl::Receiver>(*impl_->conn, impl_->received);
            impl_->conn->get_notifs();  // runs the LISTEN
            out.emplace_back("*");      // whatever was sent while we were away
        }
        const auto secs = static_cast<long>(timeout.count() / 1000);
        const auto usecs = static_cast<long>((timeout.count() % 1000) * 1000);
        impl_->conn->await_notification(secs, usecs);
        impl_->conn->get_notifs();
    } catch (const std::exception& e) {
        impl_->receiver.reset();
        impl_->conn.reset();
        Database redactor(url_);
        throw DatabaseError("listening for policy changes: " + redactor.redact(e.what()));
    }
    out.insert(out.end(), impl_->received.begin(), impl_->received.end());
    impl_->received.clear();
    return out;
}

}  // namespace ctquota::store
