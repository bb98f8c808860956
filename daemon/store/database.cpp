#include "store/database.hpp"

#include <pqxx/pqxx>

namespace ctquota::store {

Database::Database(std::string url) : url_(std::move(url)) {}

Database::~Database() = default;

pqxx::connection& Database::connection() {
    if (conn_ && conn_->is_open()) {
        return *conn_;
    }
    conn_.reset();
    try {
        conn_ = std::make_unique<pqxx::connection>(url_);
    } catch (const std::exception& e) {
        // libpq's message names host and reason; it never echoes the password.
        throw DatabaseError(std::string("cannot connect to PostgreSQL: ") + e.what());
    }
    return *conn_;
}

void Database::reset() {
    conn_.reset();
}

}  // namespace ctquota::store
