#pragma once
// Connection handling for PostgreSQL. Everything that speaks SQL lives in
// daemon/store; nothing outside it includes libpqxx.
//
// Error policy of the store: every libpqxx failure leaves the store as a
// DatabaseError (the caller retries and counts it); a broken connection is
// dropped so the next call reconnects. Invalid input (a duplicate subscriber,
// an id that does not fit) is std::invalid_argument and changes nothing; when
// the input clashes with what is stored (the id exists, an address is held by
// another subscriber) it is the subclass ConflictError.
// Messages never contain the password of the connection string.

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/connection>

namespace pqxx {
class errorhandler;
}

namespace ctquota::store {

// Thrown for every database failure the caller may retry (connection lost,
// server down, serialization failure). Carries a message fit for a log line.
class DatabaseError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Valid input that clashes with stored state; changes nothing.
class ConflictError : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

class Database {
  public:
    // statement_timeout > 0: set for every session (SET statement_timeout), so a
    // runaway statement fails instead of holding the connection.
    explicit Database(std::string url,
                      std::chrono::milliseconds statement_timeout = std::chrono::milliseconds(0));
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    // Connects lazily and reconnects after a failure; throws DatabaseError.
    pqxx::connection& connection();
    // Drops the connection so the next call reconnects (after an error).
    void reset();
    [[nodiscard]] const std::string& url() const { return url_; }
    // The URL with its password masked, for log lines.
    [[nodiscard]] std::string display_url() const { return redact(url_); }
    // `text` with every occurrence of the connection string's password masked.
    [[nodiscard]] std::string redact(std::string text) const;

    // Call from inside a catch block only. Rethrows the exception in flight:
    // libpqxx failures become DatabaseError("<what>: <reason>") and drop the
    // connection when it broke; anything else passes through unchanged.
    [[noreturn]] void fail(std::string_view what);

  private:
    std::string url_;
    std::chrono::milliseconds statement_timeout_;
    std::unique_ptr<pqxx::connection> conn_;
    std::unique_ptr<pqxx::errorhandler> notices_;  // destroyed before conn_
};

// The password spellings found in a libpq URI or key=value connection string
// (raw and percent-decoded), for redaction. Empty when there is none.
std::vector<std::string> connection_secrets(const std::string& url);

}  // namespace ctquota::store
