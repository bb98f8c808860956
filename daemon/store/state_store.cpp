#include "store/state_store.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <stdexcept>
#include <unordered_set>

#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

std::string columns() {
    return "subscriber_id, state, down_bps, up_bps, reason, " + micros_of("since") + ", " +
           micros_of("cycle_start") + ", warned_percent, " + micros_of("updated_at");
}

SubscriberStateRecord record_of(const pqxx::row& r) {
    SubscriberStateRecord s;
    s.subscriber_id = r[0].as<core::SubscriberId>();
    s.state = r[1].as<std::string>();
    if (!r[2].is_null()) {
        s.down_bps = r[2].as<std::uint64_t>();
    }
    if (!r[3].is_null()) {
        s.up_bps = r[3].as<std::uint64_t>();
    }
    s.reason = r[4].as<std::string>();
    s.since = from_micros(r[5].as<std::int64_t>());
    if (!r[6].is_null()) {
        s.cycle_start = from_micros(r[6].as<std::int64_t>());
    }
    s.warned_percent = r[7].as<unsigned>();
    s.updated_at = from_micros(r[8].as<std::int64_t>());
    return s;
}

}  // namespace

std::optional<SubscriberStateRecord> StateStore::get(core::SubscriberId id) {
    using Result = std::optional<SubscriberStateRecord>;
    return in_transaction(db_, "reading a subscriber's state", [&](pqxx::work& txn) -> Result {
        const auto rows = txn.exec_params(
            "SELECT " + columns() + " FROM subscriber_state WHERE subscriber_id = $1", id);
        if (rows.empty()) {
            return std::nullopt;
        }
        return record_of(rows[0]);
    });
}

std::vector<SubscriberStateRecord> StateStore::all() {
    return in_transaction(db_, "reading subscriber states", [&](pqxx::work& txn) {
        std::vector<SubscriberStateRecord> out;
        for (const auto& r :
             txn.exec("SELECT " + columns() + " FROM subscriber_state ORDER BY subscriber_id")) {
            out.push_back(record_of(r));
        }
        return out;
    });
}

std::vector<SubscriberStateRecord> StateStore::lock_rows(
    pqxx::work& txn, const std::vector<core::SubscriberId>& ids) {
    // Ordered, so that two gateways locking overlapping sets cannot deadlock.
    txn.exec_params(
        "SELECT 1 FROM subscribers WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE",
        int_array(ids));
    std::vector<SubscriberStateRecord> out;
    for (const auto& r : txn.exec_params("SELECT " + columns() +
                                             " FROM subscriber_state WHERE subscriber_id = "
                                             "ANY($1::bigint[])",
                                         int_array(ids))) {
        out.push_back(record_of(r));
    }
    return out;
}

void StateStore::upsert_all(pqxx::work& txn, const std::vector<SubscriberStateRecord>& states) {
    nlohmann::json rows = nlohmann::json::array();
    std::unordered_set<core::SubscriberId> seen;  // one row each (ON CONFLICT): the last wins
    for (auto it = states.rbegin(); it != states.rend(); ++it) {
        const auto& s = *it;
        if (s.state != "normal" && s.state != "throttled" && s.state != "blocked") {
            throw std::invalid_argument("state must be normal, throttled or blocked, not '" +
                                        s.state + "'");
        }
        if (!seen.insert(s.subscriber_id).second) {
            continue;
        }
        rows.push_back(
            {{"id", s.subscriber_id},
             {"state", s.state},
             {"down_bps", json_of(checked_bigint(s.down_bps, "a rate"))},
             {"up_bps", json_of(checked_bigint(s.up_bps, "a rate"))},
             {"reason", s.reason},
             {"since_us", to_micros(s.since)},
             {"cycle_us",
              json_of(s.cycle_start ? std::optional(to_micros(*s.cycle_start)) : std::nullopt)},
             {"warned", s.warned_percent}});
    }
    if (rows.empty()) {
        return;
    }
    // The rows travel as one JSON parameter: one statement for any number.
    txn.exec_params(
        "INSERT INTO subscriber_state (subscriber_id, state, down_bps, up_bps, reason, since, "
        "cycle_start, warned_percent, updated_at) "
        "SELECT id, state, down_bps, up_bps, reason, "
        "'epoch'::timestamptz + since_us * interval '1 microsecond', "
        "'epoch'::timestamptz + cycle_us * interval '1 microsecond', warned, now() "
        "FROM jsonb_to_recordset($1::jsonb) AS r(id bigint, state text, down_bps bigint, "
        "up_bps bigint, reason text, since_us bigint, cycle_us bigint, warned int) "
        "ON CONFLICT (subscriber_id) DO UPDATE SET state = EXCLUDED.state, "
        "down_bps = EXCLUDED.down_bps, up_bps = EXCLUDED.up_bps, reason = EXCLUDED.reason, "
        "since = EXCLUDED.since, cycle_start = EXCLUDED.cycle_start, "
        "warned_percent = EXCLUDED.warned_percent, updated_at = now()",
        rows.dump());
}

void StateStore::upsert(const SubscriberStateRecord& state) {
    in_transaction(db_, "writing a subscriber's state", [&](pqxx::work& txn) {
        upsert_all(txn, {state});
        return 0;
    });
}

}  // namespace ctquota::store
