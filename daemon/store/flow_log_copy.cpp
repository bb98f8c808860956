#include "store/flow_log_copy.hpp"

#include <libpq-fe.h>

#include <memory>

namespace ctquota::store {
namespace {

struct ResultDeleter {
    void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

std::string trim_end(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
        s.pop_back();
    }
    return s;
}

}  // namespace

CopyConnection::CopyConnection(std::string url, std::chrono::milliseconds statement_timeout)
    : url_(std::move(url)), statement_timeout_(statement_timeout) {}

CopyConnection::~CopyConnection() {
    if (conn_ != nullptr) {
        PQfinish(conn_);
    }
}

// DatabaseError with libpq's reason (the password masked, as Database does); drops the connection.
void CopyConnection::fail(const std::string& what) {
    std::string reason = conn_ != nullptr ? trim_end(PQerrorMessage(conn_)) : "no connection";
    if (conn_ != nullptr) {
        PQfinish(conn_);
        conn_ = nullptr;
    }
    std::string message = what + ": " + reason;
    for (const auto& secret : connection_secrets(url_)) {
        for (auto pos = message.find(secret); pos != std::string::npos;
             pos = message.find(secret, pos + 3)) {
            message.replace(pos, secret.size(), "***");
        }
    }
    throw DatabaseError(message);
}

void CopyConnection::connect() {
    if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK) {
        return;
    }
    if (conn_ != nullptr) {
        PQfinish(conn_);
    }
    conn_ = PQconnectdb(url_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
        fail("cannot connect to PostgreSQL for COPY");
    }
    if (statement_timeout_.count() > 0) {
        // A number we chose, never input.
        const Result r(PQexec(
            conn_,
            ("SET statement_timeout = " + std::to_string(statement_timeout_.count())).c_str()));
        if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
            fail("setting statement_timeout");
        }
    }
}

void CopyConnection::begin(const std::string& statement) {
    connect();
    const Result r(PQexec(conn_, statement.c_str()));
    if (PQresultStatus(r.get()) != PGRES_COPY_IN) {
        fail("starting COPY");
    }
}

void CopyConnection::send(const std::string& data) {
    if (PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) != 1) {
        fail("sending COPY data");
    }
}

void CopyConnection::end() {
    if (PQputCopyEnd(conn_, nullptr) != 1) {
        fail("ending COPY");
    }
    bool ok = true;
    while (PGresult* raw = PQgetResult(conn_)) {
        const Result r(raw);
        ok = ok && PQresultStatus(r.get()) == PGRES_COMMAND_OK;
    }
    if (!ok) {
        fail("COPY");  // nothing of it was written
    }
}

void CopyConnection::abort_copy() {
    if (conn_ == nullptr) {
        return;
    }
    PQputCopyEnd(conn_, "aborted by ctquotad");
    while (PGresult* raw = PQgetResult(conn_)) {
        PQclear(raw);
    }
}

}  // namespace ctquota::store
