#pragma once
// Prepared statements for hot queries. PostgreSQL plans an unnamed statement
// (exec_params) on every call; for the API's small per-subscriber reads the
// planning costs more than the execution (tests/bench/RESULTS.md: 3.5x the
// throughput for the same statements, measured with pgbench). exec_prepared_sql
// is a drop-in for txn.exec_params(sql, args...): the statement is prepared
// once per connection, under a name derived from its text, so call sites keep
// their SQL where it is. A reconnect starts a fresh connection object, which
// prepares again on first use.

#include <cstdio>
#include <functional>
#include <string>
#include <utility>

#include <pqxx/pqxx>

namespace ctquota::store {

inline std::string prepared_name(const std::string& sql) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "ctq_%016zx", std::hash<std::string>{}(sql));
    return buf;
}

template <typename... Args>
pqxx::result exec_prepared_sql(pqxx::transaction_base& txn, const std::string& sql,
                               Args&&... args) {
    const auto name = prepared_name(sql);
    // libpqxx keeps the definition per connection: preparing the same text
    // again is a lookup, and the server sees PREPARE only on first use.
    txn.conn().prepare(name, sql);
    return txn.exec_prepared(name, std::forward<Args>(args)...);
}

}  // namespace ctquota::store
