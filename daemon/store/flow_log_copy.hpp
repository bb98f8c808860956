#pragma once
// CopyConnection: a libpq connection of its own for COPY ... FROM STDIN. The
// data calls of COPY are not public in libpqxx 6.4 (stream_to only takes
// tuples, escaped and converted field by field); libpq's PQputCopyData takes
// the text lines the flow log builds itself, in large chunks. One COPY
// statement is one transaction: all rows or none.

#include <chrono>
#include <string>

#include "store/database.hpp"

struct pg_conn;

namespace ctquota::store {

class CopyConnection {
  public:
    CopyConnection(std::string url, std::chrono::milliseconds statement_timeout);
    ~CopyConnection();
    CopyConnection(const CopyConnection&) = delete;
    CopyConnection& operator=(const CopyConnection&) = delete;

    // Runs `copy_statement` (COPY <table> (<columns>) FROM STDIN) with the
    // data `produce` appends to its argument, called until it returns false;
    // each call's text is sent as it is (whole lines). Throws DatabaseError and
    // drops the connection (the next call reconnects).
    template <typename Produce>
    void copy(const std::string& copy_statement, Produce&& produce) {
        begin(copy_statement);
        std::string chunk;
        try {
            while (true) {
                chunk.clear();
                const bool more = produce(chunk);
                if (!chunk.empty()) {
                    send(chunk);
                }
                if (!more) {
                    break;
                }
            }
        } catch (const DatabaseError&) {
            throw;
        } catch (...) {
            abort_copy();
            throw;
        }
        end();
    }

  private:
    void connect();
    void begin(const std::string& statement);
    void send(const std::string& data);
    void end();
    void abort_copy();
    [[noreturn]] void fail(const std::string& what);

    std::string url_;
    std::chrono::milliseconds statement_timeout_;
    pg_conn* conn_ = nullptr;
};

}  // namespace ctquota::store
