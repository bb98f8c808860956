#include "api/db_pool.hpp"

#include "api/problem.hpp"

namespace ctquota::api {

DatabasePool::DatabasePool(const std::string& url, std::size_t size,
                           std::chrono::milliseconds statement_timeout) {
    for (std::size_t i = 0; i < size; ++i) {
        all_.push_back(std::make_unique<store::Database>(url, statement_timeout));
        free_.push_back(all_.back().get());
    }
}

DatabasePool::Lease::~Lease() {
    if (db_ != nullptr) {
        pool_->release(db_);
    }
}

DatabasePool::Lease DatabasePool::acquire(std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    if (!freed_.wait_for(lock, wait, [this] { return !free_.empty(); })) {
        throw unavailable("all database connections of the API are busy; retry shortly");
    }
    auto* db = free_.back();
    free_.pop_back();
    return Lease(*this, db);
}

void DatabasePool::release(store::Database* db) {
    {
        std::lock_guard lock(mu_);
        free_.push_back(db);
    }
    freed_.notify_one();
}

}  // namespace ctquota::api
