#include "store/subscriber_store.hpp"

#include <algorithm>
#include <pqxx/pqxx>
#include <stdexcept>

#include "core/calendar.hpp"
#include "store/binding_claims.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

constexpr std::size_t kMaxExternalId = 200;  // as the CHECK in schema/001_initial.sql
constexpr const char* kExclusionViolation = "23P01";

void validate_external_id(const std::string& id) {
    if (id.empty()) {
        throw std::invalid_argument("subscriber id must not be empty");
    }
    if (id.size() > kMaxExternalId) {
        throw std::invalid_argument("subscriber id is longer than " +
                                    std::to_string(kMaxExternalId) + " bytes");
    }
    if (std::any_of(id.begin(), id.end(),
                    [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
        throw std::invalid_argument("subscriber id must not contain control characters");
    }
}

}  // namespace

core::SubscriberId SubscriberStore::add(const std::string& external_id,
                                        const std::vector<core::Prefix>& prefixes,
                                        core::TimePoint valid_from,
                                        const core::BindingRules& rules) {
    validate_external_id(external_id);
    const auto cidrs = prefix_array(prefixes);
    return in_transaction(db_, "adding a subscriber", [&](pqxx::work& txn) {
        if (!prefixes.empty()) {
            lock_bindings(txn);  // before the subscriber row, as every binding writer
        }
        // A removed subscriber coming back keeps its id and its history.
        const auto row = txn.exec_params(
            "INSERT INTO subscribers (external_id) VALUES ($1) "
            "ON CONFLICT (external_id) DO UPDATE SET removed_at = NULL "
            "  WHERE subscribers.removed_at IS NOT NULL "
            "RETURNING id",
            external_id);
        if (row.empty()) {
            throw ConflictError("subscriber '" + external_id + "' already exists");
        }
        const auto id = row[0][0].as<core::SubscriberId>();
        check_new_bindings(txn, prefixes, valid_from, rules);
        try {
            txn.exec_params(
                "INSERT INTO subscriber_bindings (subscriber_id, prefix, valid_from) "
                "SELECT $1, p, " +
                    ts(3) + " FROM unnest($2::cidr[]) AS p",
                id, cidrs, to_micros(valid_from));
        } catch (const pqxx::sql_error& e) {
            // A writer that bypassed lock_bindings bound one of them meanwhile.
            if (e.sqlstate() == kExclusionViolation) {
                throw ConflictError("an address is bound to another subscriber already");
            }
            throw;
        }
        return id;
    });
}

bool SubscriberStore::remove(const std::string& external_id, core::TimePoint at) {
    return in_transaction(db_, "removing a subscriber", [&](pqxx::work& txn) {
        const auto row = txn.exec_params("UPDATE subscribers SET removed_at = " + ts(2) +
                                             " WHERE external_id = $1 AND removed_at IS NULL "
                                             "RETURNING id",
                                         external_id, to_micros(at));
        if (row.empty()) {
            return false;
        }
        const auto id = row[0][0].as<core::SubscriberId>();
        // Bindings that had not started yet go; the others end at `at`.
        txn.exec_params(
            "DELETE FROM subscriber_bindings WHERE subscriber_id = $1 AND valid_from >= " + ts(2),
            id, to_micros(at));
        txn.exec_params("UPDATE subscriber_bindings SET valid_until = " + ts(2) +
                            " WHERE subscriber_id = $1 AND (valid_until IS NULL OR valid_until > " +
                            ts(2) + ")",
                        id, to_micros(at));
        return true;
    });
}

std::vector<SubscriberRecord> SubscriberStore::list() {
    return in_transaction(db_, "listing subscribers", [&](pqxx::work& txn) {
        std::vector<SubscriberRecord> out;
        const auto rows = txn.exec(
            "SELECT s.id, s.external_id, b.prefix::text FROM subscribers s "
            "LEFT JOIN subscriber_bindings b ON b.subscriber_id = s.id "
            "  AND b.valid_from <= now() AND (b.valid_until IS NULL OR b.valid_until > now()) "
            "WHERE s.removed_at IS NULL ORDER BY s.external_id, s.id, b.prefix");
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
        const auto rows =
            txn.exec_params("SELECT subscriber_id, prefix::text, " + micros_of("valid_from") +
                                ", " + micros_of("valid_until") +
                                " FROM subscriber_bindings "
                                "WHERE valid_until IS NULL OR valid_until > " +
                                ts(1) + " ORDER BY id",
                            to_micros(now));
        std::vector<core::Binding> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            const auto text = r[1].as<std::string>();
            const auto prefix = core::Prefix::parse(text);
            if (!prefix) {
                // cidr output always parses; failing here means our parser and PostgreSQL disagree.
                throw DatabaseError("address binding '" + text +
                                    "' from the database does not parse");
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
        // Bindings are inserted (max id), deleted (count) or ended (valid_until).
        const auto r = txn.exec(
            "SELECT count(*)::text || ':' || coalesce(max(id), 0)::text || ':' || "
            "coalesce(sum(" +
            micros_of("valid_until") + "::numeric)::text, '-') || ':' || coalesce(sum(" +
            micros_of("valid_from") + "::numeric)::text, '-') FROM subscriber_bindings");
        return r[0][0].as<std::string>();
    });
}

std::optional<UsageTotals> SubscriberStore::current_usage(const std::string& external_id,
                                                          core::TimePoint now) {
    // The subscriber's cycle containing `now` (each flush records its end);
    // without usage yet, the calendar month stands in for the cycle start.
    return in_transaction(db_, "reading usage", [&](pqxx::work& txn) -> std::optional<UsageTotals> {
        const auto rows = txn.exec_params(
            "SELECT coalesce(sum(u.up_bytes), 0)::bigint, "
            "coalesce(sum(u.down_bytes), 0)::bigint, coalesce(sum(u.up_packets), 0)::bigint, "
            "coalesce(sum(u.down_packets), 0)::bigint, " +
                micros_of("max(u.updated_at)") + ", " + micros_of("min(u.period_start)") +
                " FROM subscribers s LEFT JOIN usage_period u ON u.subscriber_id = s.id "
                "  AND u.period_start <= " +
                ts(2) + " AND u.period_end > " + ts(2) + " WHERE s.external_id = $1 GROUP BY s.id",
            external_id, to_micros(now));
        if (rows.empty()) {
            return std::nullopt;
        }
        const auto& r = rows[0];
        UsageTotals t;
        t.external_id = external_id;
        t.cycle_start =
            r[5].is_null() ? core::month_start_utc(now) : from_micros(r[5].as<std::int64_t>());
        t.usage.up = {r[0].as<std::uint64_t>(), r[2].as<std::uint64_t>()};
        t.usage.down = {r[1].as<std::uint64_t>(), r[3].as<std::uint64_t>()};
        if (!r[4].is_null()) {
            t.updated_at = from_micros(r[4].as<std::int64_t>());
        }
        return t;
    });
}

}  // namespace ctquota::store
