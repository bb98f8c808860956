#include "store/policy_store.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <unordered_map>

#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

std::uint64_t u64(const pqxx::field& f) {
    return f.is_null() ? 0 : f.as<std::uint64_t>();
}

void read_usage(pqxx::work& txn, const std::vector<CycleKey>& keys,
                std::unordered_map<core::SubscriberId, EvaluationInputs>& out) {
    std::vector<std::int64_t> ids;
    std::vector<std::int64_t> starts;
    for (const auto& k : keys) {
        ids.push_back(k.id);
        starts.push_back(to_micros(k.cycle_start));
    }
    const auto rows = txn.exec_params(
        "SELECT u.subscriber_id, sum(u.up_bytes), sum(u.down_bytes), sum(u.free_up_bytes), "
        "sum(u.free_down_bytes), sum(u.zero_up_bytes), sum(u.zero_down_bytes) "
        "FROM unnest($1::bigint[], $2::bigint[]) AS k(id, start_us) "
        "JOIN usage_period u ON u.subscriber_id = k.id AND u.period_start = 'epoch'::timestamptz "
        "+ k.start_us * interval '1 microsecond' GROUP BY u.subscriber_id",
        int_array(ids), int_array(starts));
    for (const auto& r : rows) {
        auto& usage = out[r[0].as<core::SubscriberId>()].usage;
        usage.up_bytes = u64(r[1]);
        usage.down_bytes = u64(r[2]);
        usage.free_up_bytes = u64(r[3]);
        usage.free_down_bytes = u64(r[4]);
        usage.zero_up_bytes = u64(r[5]);
        usage.zero_down_bytes = u64(r[6]);
    }
    const auto overrides = txn.exec_params(
        "SELECT o.subscriber_id, o.quota_bytes FROM unnest($1::bigint[], $2::bigint[]) AS "
        "k(id, start_us) JOIN quota_overrides o ON o.subscriber_id = k.id AND o.cycle_start = "
        "'epoch'::timestamptz + k.start_us * interval '1 microsecond'",
        int_array(ids), int_array(starts));
    for (const auto& r : overrides) {
        out[r[0].as<core::SubscriberId>()].quota_override = r[1].as<std::uint64_t>();
    }
}

void read_topups(pqxx::work& txn, const std::vector<core::SubscriberId>& ids, core::TimePoint now,
                 std::unordered_map<core::SubscriberId, EvaluationInputs>& out) {
    const auto rows = txn.exec_params(
        "SELECT subscriber_id, bytes, " + micros_of("created_at") + ", " + micros_of("expires_at") +
            " FROM topups WHERE subscriber_id = ANY($1::bigint[]) AND expires_at > " + ts(2),
        int_array(ids), to_micros(now));
    for (const auto& r : rows) {
        out[r[0].as<core::SubscriberId>()].topups.push_back(
            core::TopUp{r[1].as<std::uint64_t>(), from_micros(r[2].as<std::int64_t>()),
                        from_micros(r[3].as<std::int64_t>())});
    }
}

}  // namespace

std::vector<PolicySubscriber> PolicyStore::subscribers(const std::vector<core::SubscriberId>& only,
                                                       core::TimePoint now) {
    return in_transaction(db_, "reading subscribers for the policy engine", [&](pqxx::work& txn) {
        const auto rows = txn.exec_params(
            "SELECT s.id, s.external_id, coalesce(s.plan, ''), " + micros_of("s.created_at") +
                ", coalesce(array_agg(b.prefix::text ORDER BY b.prefix) FILTER (WHERE b.id IS NOT "
                "NULL), '{}') FROM subscribers s LEFT JOIN subscriber_bindings b ON "
                "b.subscriber_id = s.id AND b.valid_from <= " +
                ts(2) + " AND (b.valid_until IS NULL OR b.valid_until > " + ts(2) +
                ") WHERE s.removed_at IS NULL AND " +
                // A hashed semi-join: `= ANY` behind an OR compared every row
                // with every id (20k ids: seconds).
                (only.empty() ? std::string("cardinality($1::bigint[]) = 0")
                              : std::string("s.id IN (SELECT unnest($1::bigint[]))")) +
                " GROUP BY s.id ORDER BY s.id",
            int_array(only), to_micros(now));
        std::vector<PolicySubscriber> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            PolicySubscriber s;
            s.id = r[0].as<core::SubscriberId>();
            s.external_id = r[1].as<std::string>();
            s.plan = r[2].as<std::string>();
            s.created_at = from_micros(r[3].as<std::int64_t>());
            auto array = r[4].as_array();
            for (auto item = array.get_next(); item.first != pqxx::array_parser::done;
                 item = array.get_next()) {
                if (item.first == pqxx::array_parser::string_value) {
                    if (auto p = core::Prefix::parse(item.second)) {
                        s.prefixes.push_back(*p);
                    }
                }
            }
            out.push_back(std::move(s));
        }
        return out;
    });
}

std::vector<core::SubscriberId> PolicyStore::changed_since(const std::string& gateway,
                                                           std::int64_t since_us) {
    return in_transaction(db_, "reading the subscribers a flush changed", [&](pqxx::work& txn) {
        std::vector<core::SubscriberId> ids;
        for (const auto& r : txn.exec_params("SELECT DISTINCT subscriber_id FROM usage_period "
                                             "WHERE gateway_id = $1 AND updated_at >= " +
                                                 ts(2),
                                             gateway, since_us)) {
            ids.push_back(r[0].as<core::SubscriberId>());
        }
        return ids;
    });
}

std::unordered_map<core::SubscriberId, EvaluationInputs> PolicyStore::inputs(
    const std::vector<CycleKey>& keys, core::TimePoint now) {
    return in_transaction(db_, "reading usage for the policy engine", [&](pqxx::work& txn) {
        std::unordered_map<core::SubscriberId, EvaluationInputs> out;
        std::vector<core::SubscriberId> ids;
        for (const auto& k : keys) {
            out[k.id];
            ids.push_back(k.id);
        }
        if (!keys.empty()) {
            read_usage(txn, keys, out);
            read_topups(txn, ids, now, out);
        }
        return out;
    });
}

namespace {

std::vector<nlohmann::json> webhook_events(const std::vector<PolicyDecision>& decisions,
                                           const std::vector<std::int64_t>& ids) {
    std::vector<nlohmann::json> out;
    std::size_t i = 0;
    for (const auto& d : decisions) {
        for (const auto& e : d.events) {
            WebhookEvent w;
            w.event_id = ids.at(i++);
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

bool same_state(const SubscriberStateRecord& a, const SubscriberStateRecord& b) {
    return a.state == b.state && a.down_bps == b.down_bps && a.up_bps == b.up_bps;
}

// What another gateway's engine recorded already (same evaluation of the same
// sum) is not recorded twice: no second event, no second webhook.
std::vector<PolicyDecision> not_yet_recorded(pqxx::work& txn,
                                             const std::vector<PolicyDecision>& decisions) {
    std::vector<core::SubscriberId> ids;
    for (const auto& d : decisions) {
        ids.push_back(d.state.subscriber_id);
    }
    std::unordered_map<core::SubscriberId, SubscriberStateRecord> stored;
    for (auto& r : StateStore::lock_rows(txn, ids)) {
        stored.emplace(r.subscriber_id, std::move(r));
    }
    std::vector<PolicyDecision> out;
    for (const auto& d : decisions) {
        auto it = stored.find(d.state.subscriber_id);
        if (it == stored.end()) {
            out.push_back(d);
            continue;
        }
        const auto& s = it->second;
        const bool same_cycle = s.cycle_start == d.state.cycle_start;
        const bool warned = same_cycle && s.warned_percent >= d.state.warned_percent;
        if (same_state(s, d.state) && warned) {
            continue;  // all of it is there
        }
        PolicyDecision keep = d;
        std::erase_if(keep.events, [&](const NewEvent& e) {
            return (e.kind == "state" && same_state(s, d.state)) ||
                   (e.kind == "warning" && warned) || (e.kind == "cycle" && same_cycle);
        });
        if (same_state(s, d.state)) {  // since when: the first gateway's word
            keep.state.since = s.since;
            keep.state.reason = s.reason;
        }
        if (same_cycle) {
            keep.state.warned_percent = std::max(s.warned_percent, d.state.warned_percent);
        }
        out.push_back(std::move(keep));
    }
    return out;
}

}  // namespace

// A round's decisions in three set-based statements (states, events, webhook
// deliveries) whatever their number: 20k decisions are not 60k round trips.
std::vector<std::int64_t> PolicyStore::record(const std::vector<PolicyDecision>& decisions,
                                              const WebhookOutbox* outbox) {
    if (decisions.empty()) {
        return {};
    }
    return in_transaction(db_, "recording enforcement decisions", [&](pqxx::work& txn) {
        const auto todo = not_yet_recorded(txn, decisions);
        std::vector<SubscriberStateRecord> states;
        std::vector<NewEvent> events;
        for (const auto& d : todo) {
            states.push_back(d.state);
            events.insert(events.end(), d.events.begin(), d.events.end());
        }
        StateStore::upsert_all(txn, states);
        auto ids = EventStore::insert_all(txn, events);
        if (outbox != nullptr && !ids.empty()) {
            outbox->enqueue_all(txn, webhook_events(todo, ids));
        }
        return ids;
    });
}

}  // namespace ctquota::store
