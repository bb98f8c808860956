#include "store/subscriber_store.hpp"

#include <pqxx/pqxx>
#include <stdexcept>

#include "core/calendar.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

std::string prefix_array(const std::vector<core::Prefix>& prefixes) {
    std::string out = "{";
    for (std::size_t i = 0; i < prefixes.size(); ++i) {
        out += (i ? "," : "") + prefixes[i].to_string();  // canonical text from our own parser
    }
    return out + "}";
}

// Runs `fn` in a transaction, turning libpqxx failures into DatabaseError.
template <typename Fn>
auto in_transaction(Database& db, const char* what, Fn&& fn) {
    try {
        pqxx::work txn(db.connection());
        auto result = fn(txn);
        txn.commit();
        return result;
    } catch (const pqxx::broken_connection& e) {
        db.reset();
        throw DatabaseError(std::string(what) + ": connection lost: " + e.what());
    } catch (const pqxx::sql_error& e) {
        throw DatabaseError(std::string(what) + ": " + e.what());
    }
}

}  // namespace

core::SubscriberId SubscriberStore::add(const std::string& external_id,
                                        const std::vector<core::Prefix>& prefixes,
                                        core::TimePoint valid_from) {
    return in_transaction(db_, "adding a subscriber", [&](pqxx::work& txn) {
        // A removed subscriber coming back keeps its id and history.
        auto row = txn.exec_params(
            "INSERT INTO subscribers (external_id) VALUES ($1) "
            "ON CONFLICT (external_id) DO UPDATE SET removed_at = NULL "
            "  WHERE subscribers.removed_at IS NOT NULL "
            "RETURNING id",
            external_id);
        if (row.empty()) {
            throw std::invalid_argument("subscriber '" + external_id + "' already exists");
        }
        const auto id = row[0][0].as<core::SubscriberId>();
        txn.exec_params(
            "INSERT INTO subscriber_bindings (subscriber_id, prefix, valid_from) "
            "SELECT $1, p, 'epoch'::timestamptz + $3::bigint * interval '1 microsecond' "
            "FROM unnest($2::cidr[]) AS p",
            id, prefix_array(prefixes), to_micros(valid_from));
        return id;
    });
}

bool SubscriberStore::remove(const std::string& external_id, core::TimePoint at) {
    return in_transaction(db_, "removing a subscriber", [&](pqxx::work& txn) {
        auto row = txn.exec_params(
            "UPDATE subscribers SET removed_at = 'epoch'::timestamptz + $2::bigint * interval "
            "'1 microsecond' WHERE external_id = $1 AND removed_at IS NULL RETURNING id",
            external_id, to_micros(at));
        if (row.empty()) {
            return false;
        }
        const auto id = row[0][0].as<core::SubscriberId>();
        const std::string at_sql = "'epoch'::timestamptz + $2::bigint * interval '1 microsecond'";
        txn.exec_params(
            "DELETE FROM subscriber_bindings WHERE subscriber_id = $1 AND valid_from >= " + at_sql,
            id, to_micros(at));
        txn.exec_params("UPDATE subscriber_bindings SET valid_until = " + at_sql +
                            " WHERE subscriber_id = $1 AND (valid_until IS NULL OR valid_until > " +
                            at_sql + ")",
                        id, to_micros(at));
        return true;
    });
}

std::vector<SubscriberRecord> SubscriberStore::list() {
    return in_transaction(db_, "listing subscribers", [&](pqxx::work& txn) {
        std::vector<SubscriberRecord> out;
        auto rows = txn.exec(
            "SELECT s.id, s.external_id, b.prefix::text FROM subscribers s "
            "LEFT JOIN subscriber_bindings b ON b.subscriber_id = s.id "
            "  AND b.valid_from <= now() AND (b.valid_until IS NULL OR b.valid_until > now()) "
            "WHERE s.removed_at IS NULL ORDER BY s.external_id, b.prefix");
        for (const auto& r : rows) {
            const auto id = r[0].as<core::SubscriberId>();
            if (out.empty() || out.back().id != id) {
                out.push_back(SubscriberRecord{id, r[1].as<std::string>(), {}});
            }
            if (!r[2].is_null()) {
                out.back().addresses.push_back(r[2].as<std::string>());
            }
        }
        return out;
    });
}

std::vector<core::Binding> SubscriberStore::load_bindings(core::TimePoint now) {
    return in_transaction(db_, "loading address bindings", [&](pqxx::work& txn) {
        std::vector<core::Binding> out;
        auto rows = txn.exec_params(
            "SELECT subscriber_id, prefix::text, " + micros_of("valid_from") + ", " +
                micros_of("valid_until") +
                " FROM subscriber_bindings WHERE valid_until IS NULL OR valid_until > "
                "'epoch'::timestamptz + $1::bigint * interval '1 microsecond'",
            to_micros(now));
        out.reserve(rows.size());
        for (const auto& r : rows) {
            auto prefix = core::Prefix::parse(r[1].as<std::string>());
            if (!prefix) {
                continue;  // cidr values always parse; guard against a future type change
            }
            core::Binding b{r[0].as<core::SubscriberId>(), *prefix,
                            from_micros(r[2].as<std::int64_t>()), std::nullopt};
            if (!r[3].is_null()) {
                b.valid_until = from_micros(r[3].as<std::int64_t>());
            }
            out.push_back(b);
        }
        return out;
    });
}

std::string SubscriberStore::bindings_fingerprint() {
    return in_transaction(db_, "checking address bindings", [&](pqxx::work& txn) {
        auto r = txn.exec(
            "SELECT count(*)::text || ':' || coalesce(max(id), 0)::text || ':' || "
            "coalesce(sum(extract(epoch from valid_until))::text, '-') || ':' || "
            "coalesce(sum(extract(epoch from valid_from))::text, '-') FROM subscriber_bindings");
        return r[0][0].as<std::string>();
    });
}

std::optional<UsageTotals> SubscriberStore::current_usage(const std::string& external_id,
                                                          core::TimePoint now) {
    const auto period = core::month_start_utc(now);
    return in_transaction(db_, "reading usage", [&](pqxx::work& txn) -> std::optional<UsageTotals> {
        auto rows = txn.exec_params(
            "SELECT s.external_id, coalesce(sum(u.up_bytes), 0)::bigint, "
            "coalesce(sum(u.down_bytes), 0)::bigint, coalesce(sum(u.up_packets), 0)::bigint, "
            "coalesce(sum(u.down_packets), 0)::bigint, " +
                micros_of("max(u.updated_at)") +
                " FROM subscribers s LEFT JOIN usage_period u ON u.subscriber_id = s.id "
                "  AND u.period_start = 'epoch'::timestamptz + $2::bigint * interval '1 "
                "microsecond' "
                "WHERE s.external_id = $1 GROUP BY s.external_id",
            external_id, to_micros(period));
        if (rows.empty()) {
            return std::nullopt;
        }
        const auto& r = rows[0];
        UsageTotals t;
        t.external_id = r[0].as<std::string>();
        t.cycle_start = period;
        t.usage.up = {r[1].as<std::uint64_t>(), r[3].as<std::uint64_t>()};
        t.usage.down = {r[2].as<std::uint64_t>(), r[4].as<std::uint64_t>()};
        if (!r[5].is_null()) {
            t.updated_at = from_micros(r[5].as<std::int64_t>());
        }
        return t;
    });
}

}  // namespace ctquota::store
