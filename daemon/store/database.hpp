#pragma once
// Connection handling for PostgreSQL. Everything that speaks SQL lives in
// daemon/store; nothing outside it includes libpqxx.

#include <memory>
#include <stdexcept>
#include <string>

#include <pqxx/connection>

namespace ctquota::store {

// Thrown for every database failure the caller may retry (connection lost,
// server down, serialization failure). Carries a message fit for a log line.
class DatabaseError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class Database {
  public:
    explicit Database(std::string url);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    // Connects lazily and reconnects after a failure; throws DatabaseError.
    pqxx::connection& connection();
    // Drops the connection so the next call reconnects (after an error).
    void reset();
    [[nodiscard]] const std::string& url() const { return url_; }

  private:
    std::string url_;
    std::unique_ptr<pqxx::connection> conn_;
};

}  // namespace ctquota::store
