#include "store/state_store.hpp"

#include <limits>
#include <pqxx/pqxx>
#include <stdexcept>

#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

std::optional<std::int64_t> as_bigint(const std::optional<std::uint64_t>& v) {
    if (!v) {
        return std::nullopt;
    }
    if (*v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw std::invalid_argument("a rate is larger than 9223372036854775807 bit/s");
    }
    return static_cast<std::int64_t>(*v);
}

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

void StateStore::upsert(pqxx::work& txn, const SubscriberStateRecord& s) {
    if (s.state != "normal" && s.state != "throttled" && s.state != "blocked") {
        throw std::invalid_argument("state must be normal, throttled or blocked, not '" + s.state +
                                    "'");
    }
    const auto cycle = s.cycle_start ? std::optional(to_micros(*s.cycle_start)) : std::nullopt;
    txn.exec_params(
        "INSERT INTO subscriber_state (subscriber_id, state, down_bps, up_bps, reason, since, "
        "cycle_start, warned_percent, updated_at) VALUES ($1, $2, $3, $4, $5, " +
            ts(6) + ", " + ts(7) +
            ", $8, now()) ON CONFLICT (subscriber_id) DO UPDATE SET state = EXCLUDED.state, "
            "down_bps = EXCLUDED.down_bps, up_bps = EXCLUDED.up_bps, reason = EXCLUDED.reason, "
            "since = EXCLUDED.since, cycle_start = EXCLUDED.cycle_start, "
            "warned_percent = EXCLUDED.warned_percent, updated_at = now()",
        s.subscriber_id, s.state, as_bigint(s.down_bps), as_bigint(s.up_bps), s.reason,
        to_micros(s.since), cycle, static_cast<int>(s.warned_percent));
}

void StateStore::upsert(const SubscriberStateRecord& state) {
    in_transaction(db_, "writing a subscriber's state", [&](pqxx::work& txn) {
        upsert(txn, state);
        return 0;
    });
}

}  // namespace ctquota::store
