#pragma once
// The API's own PostgreSQL connections. store::Database is not thread-safe, so
// each request borrows one for its duration; the accounting flusher keeps its
// own connection and never waits for the API.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "store/database.hpp"

namespace ctquota::api {

class DatabasePool {
  public:
    // `size` connections, each opened on first use and reopened after a failure.
    DatabasePool(const std::string& url, std::size_t size,
                 std::chrono::milliseconds statement_timeout = std::chrono::milliseconds(0));

    class Lease {
      public:
        Lease(DatabasePool& pool, store::Database* db) : pool_(&pool), db_(db) {}
        Lease(Lease&& other) noexcept : pool_(other.pool_), db_(other.db_) { other.db_ = nullptr; }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        Lease& operator=(Lease&&) = delete;
        ~Lease();
        store::Database& operator*() const { return *db_; }

      private:
        DatabasePool* pool_;
        store::Database* db_;
    };

    // Throws ApiError 503 when no connection frees up within `wait`.
    Lease acquire(std::chrono::milliseconds wait = std::chrono::milliseconds(2000));

  private:
    void release(store::Database* db);

    std::vector<std::unique_ptr<store::Database>> all_;
    std::vector<store::Database*> free_;
    std::mutex mu_;
    std::condition_variable freed_;
};

}  // namespace ctquota::api
