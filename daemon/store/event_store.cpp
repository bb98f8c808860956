#include "store/event_store.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <stdexcept>

#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

std::optional<std::uint64_t> optional_bytes(const pqxx::field& f) {
    return f.is_null() ? std::nullopt : std::optional(f.as<std::uint64_t>());
}

std::optional<std::string> optional_text(const pqxx::field& f) {
    return f.is_null() ? std::nullopt : std::optional(f.as<std::string>());
}

}  // namespace

std::vector<std::int64_t> EventStore::insert_all(pqxx::work& txn,
                                                 const std::vector<NewEvent>& events) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& e : events) {
        if (e.kind != "state" && e.kind != "warning" && e.kind != "cycle") {
            throw std::invalid_argument("event kind must be state, warning or cycle, not '" +
                                        e.kind + "'");
        }
        auto detail = nlohmann::json::parse(e.detail_json, nullptr, false);
        if (!detail.is_object()) {
            throw std::invalid_argument("event detail must be a JSON object, not " + e.detail_json);
        }
        rows.push_back(
            {{"subscriber_id", e.subscriber_id},
             {"at_us", json_of(e.at ? std::optional(to_micros(*e.at)) : std::nullopt)},
             {"kind", e.kind},
             {"from_state", json_of(e.from_state)},
             {"to_state", json_of(e.to_state)},
             {"reason", e.reason},
             {"counted_bytes", json_of(checked_bigint(e.counted_bytes, "a byte count"))},
             {"allowance_bytes", json_of(checked_bigint(e.allowance_bytes, "a byte count"))},
             {"detail", std::move(detail)}});
    }
    if (rows.empty()) {
        return {};
    }
    // Ids first (one nextval each), so that the caller can pair them with its
    // events without relying on the order RETURNING gives rows back in.
    std::vector<std::int64_t> ids;
    for (const auto& r :
         txn.exec_params("SELECT nextval(pg_get_serial_sequence('enforcement_events', 'id')) "
                         "FROM generate_series(1, $1::int)",
                         static_cast<int>(rows.size()))) {
        ids.push_back(r[0].as<std::int64_t>());
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
        rows[i]["id"] = ids[i];
    }
    txn.exec_params(
        "INSERT INTO enforcement_events (id, subscriber_id, at, kind, from_state, to_state, "
        "reason, counted_bytes, allowance_bytes, detail) "
        "SELECT id, subscriber_id, coalesce('epoch'::timestamptz + at_us * interval "
        "'1 microsecond', now()), kind, from_state, to_state, reason, counted_bytes, "
        "allowance_bytes, detail FROM jsonb_to_recordset($1::jsonb) AS r(id bigint, "
        "subscriber_id bigint, at_us bigint, kind text, from_state text, to_state text, "
        "reason text, counted_bytes bigint, allowance_bytes bigint, detail jsonb)",
        rows.dump());
    return ids;
}

std::int64_t EventStore::insert(const NewEvent& event) {
    return in_transaction(db_, "recording an enforcement event",
                          [&](pqxx::work& txn) { return insert_all(txn, {event}).at(0); });
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
