#include "store/subscriber_queries.hpp"

#include "store/prepared.hpp"
#include "store/sql_util.hpp"

#include "core/calendar.hpp"

namespace ctquota::store {
namespace {

// Bindings valid at parameter $n, as one comma-separated text (CIDR text has no commas).
std::string addresses_at(int n) {
    return "(SELECT string_agg(b.prefix::text, ',' ORDER BY b.prefix) FROM subscriber_bindings b "
           "WHERE b.subscriber_id = s.id AND b.valid_from <= " +
           ts(n) + " AND (b.valid_until IS NULL OR b.valid_until > " + ts(n) + "))";
}

const char* const kUsageSums =
    "coalesce(sum(u.up_bytes), 0)::bigint, coalesce(sum(u.down_bytes), 0)::bigint, "
    "coalesce(sum(u.up_packets), 0)::bigint, coalesce(sum(u.down_packets), 0)::bigint, ";

std::vector<std::string> split_addresses(const pqxx::field& f) {
    std::vector<std::string> out;
    if (f.is_null()) {
        return out;
    }
    const auto text = f.as<std::string>();
    std::size_t start = 0;
    while (start <= text.size()) {
        const auto comma = text.find(',', start);
        out.push_back(text.substr(start, comma - start));
        if (comma == std::string::npos) {
            break;
        }
        start = comma + 1;
    }
    return out;
}

// Columns first..first+4: the four sums, then max(updated_at) in microseconds.
CycleUsage usage_of(const std::string& external_id, const pqxx::row& r, int first) {
    CycleUsage c;
    c.external_id = external_id;
    c.usage.up = {r[first].as<std::uint64_t>(), r[first + 2].as<std::uint64_t>()};
    c.usage.down = {r[first + 1].as<std::uint64_t>(), r[first + 3].as<std::uint64_t>()};
    if (!r[first + 4].is_null()) {
        c.updated_at = from_micros(r[first + 4].as<std::int64_t>());
    }
    return c;
}

std::optional<std::string> optional_text(const pqxx::field& f) {
    return f.is_null() ? std::nullopt : std::optional(f.as<std::string>());
}

// The cycle's totals (summed over gateways and over the period rows that start
// inside it) and their uncounted parts.
void read_cycle(pqxx::work& txn, SubscriberDetail& d) {
    const auto rows = exec_prepared_sql(
        txn,
        std::string("SELECT ") + kUsageSums + micros_of("max(u.updated_at)") +
            ", coalesce(sum(u.free_up_bytes), 0)::bigint, coalesce(sum(u.free_down_bytes), "
            "0)::bigint, coalesce(sum(u.zero_up_bytes), 0)::bigint, "
            "coalesce(sum(u.zero_down_bytes), 0)::bigint FROM usage_period u "
            "WHERE u.subscriber_id = $1 AND u.period_start >= " +
            ts(2) + " AND u.period_start < " + ts(3),
        d.id, to_micros(d.span.start), to_micros(d.span.end));
    const auto& r = rows[0];
    d.cycle = usage_of(d.subscriber.external_id, r, 0);
    d.uncounted = {r[5].as<std::uint64_t>(), r[6].as<std::uint64_t>(), r[7].as<std::uint64_t>(),
                   r[8].as<std::uint64_t>()};
}

void read_policy_inputs(pqxx::work& txn, SubscriberDetail& d, core::TimePoint now) {
    const auto quota = exec_prepared_sql(
        txn,
        "SELECT quota_bytes FROM quota_overrides WHERE subscriber_id = $1 AND cycle_start = " +
            ts(2),
        d.id, to_micros(d.span.start));
    if (!quota.empty()) {
        d.quota_override = quota[0][0].as<std::uint64_t>();
    }
    for (const auto& r : exec_prepared_sql(
             txn,
             "SELECT id, bytes, " + micros_of("created_at") + ", " + micros_of("expires_at") +
                 ", idempotency_key FROM topups WHERE subscriber_id = $1 AND created_at <= " +
                 ts(2) + " AND expires_at > " + ts(2) + " ORDER BY expires_at, id",
             d.id, to_micros(now))) {
        d.topups.push_back({r[0].as<std::int64_t>(), r[1].as<std::uint64_t>(),
                            from_micros(r[2].as<std::int64_t>()),
                            from_micros(r[3].as<std::int64_t>()), optional_text(r[4])});
    }
    const auto state =
        exec_prepared_sql(txn,
                          "SELECT state, down_bps, up_bps, reason, " + micros_of("since") +
                              " FROM subscriber_state WHERE subscriber_id = $1",
                          d.id);
    if (!state.empty()) {
        const auto& r = state[0];
        SubscriberStateRecord st;
        st.subscriber_id = d.id;
        st.state = r[0].as<std::string>();
        if (!r[1].is_null()) {
            st.down_bps = r[1].as<std::uint64_t>();
        }
        if (!r[2].is_null()) {
            st.up_bps = r[2].as<std::uint64_t>();
        }
        st.reason = r[3].as<std::string>();
        st.since = from_micros(r[4].as<std::int64_t>());
        d.state = st;
    }
}

}  // namespace

std::optional<SubscriberDetail> SubscriberQueries::find(const std::string& external_id,
                                                        core::TimePoint now,
                                                        core::TimePoint cycle_start) {
    return find(external_id, now,
                [cycle_start](core::TimePoint, const std::optional<std::string>&,
                              const std::optional<std::string>&) {
                    return CycleSpan{cycle_start, core::next_month_start_utc(cycle_start)};
                });
}

std::optional<SubscriberDetail> SubscriberQueries::find(const std::string& external_id,
                                                        core::TimePoint now,
                                                        const CycleOf& cycle_of) {
    return in_transaction(
        db_, "reading a subscriber", [&](pqxx::work& txn) -> std::optional<SubscriberDetail> {
            const auto rows =
                exec_prepared_sql(txn,
                                  "SELECT s.id, s.external_id, " + micros_of("s.created_at") +
                                      ", " + addresses_at(2) +
                                      ", s.plan, p.definition::text FROM subscribers s "
                                      "LEFT JOIN plans p ON p.name = s.plan "
                                      "WHERE s.external_id = $1 AND s.removed_at IS NULL",
                                  external_id, to_micros(now));
            if (rows.empty()) {
                return std::nullopt;
            }
            const auto& r = rows[0];
            SubscriberDetail d;
            d.id = r[0].as<core::SubscriberId>();
            d.subscriber = {r[1].as<std::string>(), from_micros(r[2].as<std::int64_t>()),
                            split_addresses(r[3]), optional_text(r[4])};
            d.plan_definition = optional_text(r[5]);
            d.span = cycle_of(d.subscriber.created_at, d.subscriber.plan, d.plan_definition);
            read_cycle(txn, d);
            read_policy_inputs(txn, d, now);
            return d;
        });
}

std::optional<SubscriberQueries::Ref> SubscriberQueries::ref(const std::string& external_id) {
    return in_transaction(db_, "reading a subscriber", [&](pqxx::work& txn) -> std::optional<Ref> {
        const auto rows = txn.exec_params(
            "SELECT s.id, " + micros_of("s.created_at") +
                ", s.plan, p.definition::text FROM subscribers s LEFT JOIN plans p ON p.name = "
                "s.plan WHERE s.external_id = $1 AND s.removed_at IS NULL",
            external_id);
        if (rows.empty()) {
            return std::nullopt;
        }
        const auto& r = rows[0];
        return Ref{r[0].as<core::SubscriberId>(), from_micros(r[1].as<std::int64_t>()),
                   optional_text(r[2]), optional_text(r[3])};
    });
}

std::vector<SubscriberView> SubscriberQueries::page(const std::string& q, const std::string& after,
                                                    std::size_t limit, core::TimePoint now) {
    return page(SubscriberFilter{q, "", ""}, after, limit, now);
}

std::vector<SubscriberView> SubscriberQueries::page(const SubscriberFilter& filter,
                                                    const std::string& after, std::size_t limit,
                                                    core::TimePoint now) {
    return in_transaction(db_, "listing subscribers", [&](pqxx::work& txn) {
        // Every external id is non-empty, so "" sorts before all of them.
        const auto rows = txn.exec_params(
            "SELECT s.external_id, " + micros_of("s.created_at") + ", " + addresses_at(4) +
                ", s.plan FROM subscribers s "
                "LEFT JOIN subscriber_state st ON st.subscriber_id = s.id "
                "WHERE s.removed_at IS NULL AND s.external_id > $1 "
                "AND ($2 = '' OR strpos(lower(s.external_id), lower($2)) > 0) "
                "AND ($5 = '' OR s.plan = $5) "
                "AND ($6 = '' OR coalesce(st.state, 'normal') = $6) "
                "ORDER BY s.external_id LIMIT $3",
            after, filter.q, static_cast<std::int64_t>(limit), to_micros(now), filter.plan,
            filter.state);
        std::vector<SubscriberView> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            out.push_back({r[0].as<std::string>(), from_micros(r[1].as<std::int64_t>()),
                           split_addresses(r[2]), optional_text(r[3])});
        }
        return out;
    });
}

std::vector<CycleUsage> SubscriberQueries::usage_page(core::TimePoint start, core::TimePoint end,
                                                      const std::string& after, std::size_t limit) {
    return in_transaction(db_, "exporting usage", [&](pqxx::work& txn) {
        const auto rows = txn.exec_params(
            "SELECT s.external_id, " + std::string(kUsageSums) + micros_of("max(u.updated_at)") +
                " FROM subscribers s LEFT JOIN usage_period u ON u.subscriber_id = s.id "
                "  AND u.period_start = " +
                ts(1) +
                " WHERE s.external_id > $3 AND (u.subscriber_id IS NOT NULL OR "
                "  (s.created_at < " +
                ts(2) + " AND (s.removed_at IS NULL OR s.removed_at > " + ts(1) +
                "))) GROUP BY s.external_id ORDER BY s.external_id LIMIT $4",
            to_micros(start), to_micros(end), after, static_cast<std::int64_t>(limit));
        std::vector<CycleUsage> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            out.push_back(usage_of(r[0].as<std::string>(), r, 1));
        }
        return out;
    });
}

namespace {

// date_trunc's field names; a fixed set, still passed as a parameter.
const char* trunc_field(SeriesUnit unit) {
    switch (unit) {
        case SeriesUnit::Hour:
            return "hour";
        case SeriesUnit::Day:
            return "day";
        case SeriesUnit::Month:
            return "month";
    }
    return "hour";
}

}  // namespace

std::optional<std::vector<SeriesPoint>> SubscriberQueries::usage_series(
    const std::string& external_id, core::TimePoint from, core::TimePoint to, SeriesUnit unit) {
    using Result = std::optional<std::vector<SeriesPoint>>;
    return in_transaction(db_, "reading a usage series", [&](pqxx::work& txn) -> Result {
        const auto id = txn.exec_params(
            "SELECT id FROM subscribers WHERE external_id = $1 AND removed_at IS NULL",
            external_id);
        if (id.empty()) {
            return std::nullopt;
        }
        // Buckets in UTC whatever the session's TimeZone says.
        const auto rows = txn.exec_params(
            "SELECT " +
                micros_of("date_trunc($4::text, u.hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'") +
                " AS bucket, " + kUsageSums +
                "NULL::bigint FROM usage_hourly u WHERE u.subscriber_id = $1 AND u.hour >= " +
                ts(2) + " AND u.hour < " + ts(3) + " GROUP BY bucket ORDER BY bucket",
            id[0][0].as<std::int64_t>(), to_micros(from), to_micros(to), trunc_field(unit));
        std::vector<SeriesPoint> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            const auto sums = usage_of("", r, 1);
            out.push_back({from_micros(r[0].as<std::int64_t>()), sums.usage});
        }
        return out;
    });
}

}  // namespace ctquota::store
