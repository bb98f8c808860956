#include "store/event_store.hpp"

#include <limits>
#include <pqxx/pqxx>
#include <stdexcept>

#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

constexpr const char* kCheckViolation = "23514";
constexpr const char* kInvalidJson = "22P02";

std::optional<std::int64_t> as_bigint(const std::optional<std::uint64_t>& v) {
    if (!v) {
        return std::nullopt;
    }
    if (*v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw std::invalid_argument("an event's byte count is larger than 9223372036854775807");
    }
    return static_cast<std::int64_t>(*v);
}

std::optional<std::uint64_t> optional_bytes(const pqxx::field& f) {
    return f.is_null() ? std::nullopt : std::optional(f.as<std::uint64_t>());
}

std::optional<std::string> optional_text(const pqxx::field& f) {
    return f.is_null() ? std::nullopt : std::optional(f.as<std::string>());
}

}  // namespace

std::int64_t EventStore::insert(pqxx::work& txn, const NewEvent& e) {
    if (e.kind != "state" && e.kind != "warning" && e.kind != "cycle") {
        throw std::invalid_argument("event kind must be state, warning or cycle, not '" + e.kind +
                                    "'");
    }
    const auto at = e.at ? std::optional(to_micros(*e.at)) : std::nullopt;
    try {
        // A subtransaction would be needed to recover from a failed statement;
        // bad input is refused before it reaches the server where we can.
        return txn
            .exec_params(
                "INSERT INTO enforcement_events (subscriber_id, at, kind, from_state, to_state, "
                "reason, counted_bytes, allowance_bytes, detail) VALUES ($1, coalesce(" +
                    ts(2) + ", now()), $3, $4, $5, $6, $7, $8, $9::jsonb) RETURNING id",
                e.subscriber_id, at, e.kind, e.from_state, e.to_state, e.reason,
                as_bigint(e.counted_bytes), as_bigint(e.allowance_bytes), e.detail_json)[0][0]
            .as<std::int64_t>();
    } catch (const pqxx::sql_error& err) {
        if (err.sqlstate() == kInvalidJson || err.sqlstate() == kCheckViolation) {
            throw std::invalid_argument("event detail must be a JSON object: " +
                                        std::string(err.what()));
        }
        throw;
    }
}

std::int64_t EventStore::insert(const NewEvent& event) {
    return in_transaction(db_, "recording an enforcement event",
                          [&](pqxx::work& txn) { return insert(txn, event); });
}

std::vector<EventRecord> EventStore::page(core::SubscriberId id, std::int64_t before_id,
                                          std::size_t limit) {
    return in_transaction(db_, "listing enforcement events", [&](pqxx::work& txn) {
        const auto rows = txn.exec_params(
            "SELECT id, subscriber_id, " + micros_of("at") +
                ", kind, from_state, to_state, reason, counted_bytes, allowance_bytes, "
                "detail::text FROM enforcement_events WHERE subscriber_id = $1 "
                "AND ($2::bigint = 0 OR id < $2::bigint) ORDER BY id DESC LIMIT $3",
            id, before_id, static_cast<std::int64_t>(limit));
        std::vector<EventRecord> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            out.push_back({r[0].as<std::int64_t>(), r[1].as<core::SubscriberId>(),
                           from_micros(r[2].as<std::int64_t>()), r[3].as<std::string>(),
                           optional_text(r[4]), optional_text(r[5]), r[6].as<std::string>(),
                           optional_bytes(r[7]), optional_bytes(r[8]), r[9].as<std::string>()});
        }
        return out;
    });
}

}  // namespace ctquota::store
