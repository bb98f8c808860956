#pragma once
// Helpers shared by the store's files: time conversion and array parameters.
// Values travel as parameters only; nothing here builds SQL from input.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "core/address.hpp"
#include "core/clock.hpp"
#include "store/database.hpp"

namespace ctquota::store {

// timestamptz <-> microseconds since the epoch, exactly (no float rounding). In SQL:
// 'epoch'::timestamptz + $N::bigint * interval '1 microsecond'

inline std::int64_t to_micros(core::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

inline core::TimePoint from_micros(std::int64_t us) {
    return core::TimePoint{std::chrono::microseconds{us}};
}

// SQL expression giving a timestamptz column as bigint microseconds.
inline std::string micros_of(const std::string& column) {
    return "(extract(epoch from " + column + ") * 1000000)::bigint";
}

// A bigint microsecond parameter $n as timestamptz.
inline std::string ts(int n) {
    return "('epoch'::timestamptz + $" + std::to_string(n) + "::bigint * interval '1 microsecond')";
}

// An unsigned count as a bigint; std::invalid_argument past INT64_MAX naming `what`.
inline std::optional<std::int64_t> checked_bigint(const std::optional<std::uint64_t>& v,
                                                  const char* what) {
    if (v && *v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw std::invalid_argument(std::string(what) + " is larger than 9223372036854775807");
    }
    return v ? std::optional(static_cast<std::int64_t>(*v)) : std::nullopt;
}

// nullopt as JSON null (rows passed as one JSON parameter, see StateStore).
template <typename T>
nlohmann::json json_of(const std::optional<T>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

// Runs `fn` in one transaction; libpqxx failures become DatabaseError, other
// exceptions (std::invalid_argument, ConflictError) pass through unchanged.
template <typename Fn>
auto in_transaction(Database& db, const char* what, Fn&& fn) {
    try {
        pqxx::work txn(db.connection());
        auto result = fn(txn);
        txn.commit();
        return result;
    } catch (...) {
        db.fail(what);
    }
}

// A PostgreSQL array literal of integers, passed as one text parameter.
template <typename T>
std::string int_array(const std::vector<T>& values) {
    std::string out = "{";
    out.reserve(values.size() * 8 + 2);
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (i != 0) {
            out += ',';
        }
        out += std::to_string(values[i]);
    }
    out += '}';
    return out;
}

// A PostgreSQL cidr[] literal of distinct prefixes, passed as one text parameter.
inline std::string prefix_array(std::vector<core::Prefix> prefixes) {
    std::sort(prefixes.begin(), prefixes.end());
    prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
    std::string out = "{";
    for (std::size_t i = 0; i < prefixes.size(); ++i) {
        // Canonical text from our own formatter: digits, dots, colons and a slash only.
        out += (i != 0 ? "," : "") + prefixes[i].to_string();
    }
    return out + "}";
}

}  // namespace ctquota::store
