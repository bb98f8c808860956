// PolicyStore::record: a round of the policy engine's decisions in one
// transaction of three set-based statements (states, events, webhook
// deliveries), whatever their number. The rows travel as one JSON parameter
// each, unpacked by jsonb_to_recordset: 20k decisions are 3 round trips, not
// 60k.
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <stdexcept>
#include <unordered_set>

#include "store/policy_store.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

using Json = nlohmann::json;

template <typename T>
Json or_null(const std::optional<T>& v) {
    return v ? Json(*v) : Json(nullptr);
}

void check(const PolicyDecision& d) {
    const auto& s = d.state.state;
    if (s != "normal" && s != "throttled" && s != "blocked") {
        throw std::invalid_argument("state must be normal, throttled or blocked, not '" + s + "'");
    }
    for (const auto& e : d.events) {
        if (e.kind != "state" && e.kind != "warning" && e.kind != "cycle") {
            throw std::invalid_argument("event kind must be state, warning or cycle, not '" +
                                        e.kind + "'");
        }
        const auto detail = Json::parse(e.detail_json, nullptr, false);
        if (!detail.is_object()) {
            throw std::invalid_argument("event detail must be a JSON object");
        }
    }
}

void write_states(pqxx::work& txn, const std::vector<PolicyDecision>& decisions) {
    Json rows = Json::array();
    std::unordered_set<core::SubscriberId> seen;  // one row each (ON CONFLICT): the last wins
    for (auto d = decisions.rbegin(); d != decisions.rend(); ++d) {
        const auto& s = d->state;
        if (!seen.insert(s.subscriber_id).second) {
            continue;
        }
        rows.push_back({{"id", s.subscriber_id},
                        {"state", s.state},
                        {"down_bps", or_null(s.down_bps)},
                        {"up_bps", or_null(s.up_bps)},
                        {"reason", s.reason},
                        {"since_us", to_micros(s.since)},
                        {"cycle_us", s.cycle_start ? Json(to_micros(*s.cycle_start)) : Json()},
                        {"warned", s.warned_percent}});
    }
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

// Ids first (one nextval per event), so that each webhook payload can name
// its event without relying on the order RETURNING gives rows back in.
std::vector<std::int64_t> write_events(pqxx::work& txn, const std::vector<PolicyDecision>& d,
                                       std::size_t count) {
    std::vector<std::int64_t> ids;
    for (const auto& r :
         txn.exec_params("SELECT nextval(pg_get_serial_sequence('enforcement_events', 'id')) "
                         "FROM generate_series(1, $1::int)",
                         static_cast<int>(count))) {
        ids.push_back(r[0].as<std::int64_t>());
    }
    Json rows = Json::array();
    std::size_t i = 0;
    for (const auto& decision : d) {
        for (const auto& e : decision.events) {
            rows.push_back({{"id", ids[i++]},
                            {"subscriber_id", e.subscriber_id},
                            {"at_us", e.at ? Json(to_micros(*e.at)) : Json()},
                            {"kind", e.kind},
                            {"from_state", or_null(e.from_state)},
                            {"to_state", or_null(e.to_state)},
                            {"reason", e.reason},
                            {"counted_bytes", or_null(e.counted_bytes)},
                            {"allowance_bytes", or_null(e.allowance_bytes)},
                            {"detail", Json::parse(e.detail_json)}});
        }
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

std::vector<Json> webhook_events(const std::vector<PolicyDecision>& decisions,
                                 const std::vector<std::int64_t>& ids) {
    std::vector<Json> out;
    std::size_t i = 0;
    for (const auto& d : decisions) {
        for (const auto& e : d.events) {
            WebhookEvent w;
            w.event_id = ids[i++];
            w.kind = e.kind;
            w.subscriber_id = d.external_id;
            w.at = e.at.value_or(core::TimePoint{});
            w.from_state = e.from_state;
            w.to_state = e.to_state;
            w.reason = e.reason;
            w.counted_bytes = e.counted_bytes;
            w.allowance_bytes = e.allowance_bytes;
            out.push_back(webhook_payload(w));
        }
    }
    return out;
}

}  // namespace

std::vector<std::int64_t> PolicyStore::record(const std::vector<PolicyDecision>& decisions,
                                              const WebhookOutbox* outbox) {
    std::size_t events = 0;
    for (const auto& d : decisions) {
        check(d);
        events += d.events.size();
    }
    if (decisions.empty()) {
        return {};
    }
    return in_transaction(db_, "recording enforcement decisions", [&](pqxx::work& txn) {
        write_states(txn, decisions);
        if (events == 0) {
            return std::vector<std::int64_t>{};
        }
        auto ids = write_events(txn, decisions, events);
        if (outbox != nullptr) {
            outbox->enqueue_all(txn, webhook_events(decisions, ids));
        }
        return ids;
    });
}

}  // namespace ctquota::store
