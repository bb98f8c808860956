#include "store/subscriber_queries.hpp"

#include <map>

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
void read_cycle(pqxx::transaction_base& txn, SubscriberDetail& d) {
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

void read_quota_override(pqxx::transaction_base& txn, SubscriberDetail& d) {
    const auto quota = exec_prepared_sql(
        txn,
        "SELECT quota_bytes FROM quota_overrides WHERE subscriber_id = $1 AND cycle_start = " +
            ts(2),
        d.id, to_micros(d.span.start));
    if (!quota.empty()) {
        d.quota_override = quota[0][0].as<std::uint64_t>();
    }
}

// find() reads everything in one prepared statement: one round trip and one
// snapshot (the statements of a READ COMMITTED transaction each took their
// own). The cycle is chosen in C++ from the plan the statement returns, so the
// statement returns the usage and quota overrides of every period starting in
// a window around `now` and find() keeps those inside the cycle; a cycle
// reaching outside the window (every_n_days plans longer than the window) is
// read with two more statements. Monthly cycles (at most 31 days and a DST
// shift) always fit.
constexpr auto kWindow = std::chrono::days{35};

// Rows, ordered by kind, then n1, n2:
//   kind 0, one row (none: no active subscriber): n1 id, n2 created_at,
//     n3 state's down_bps, n4 up_bps, n5 since; t1 addresses, t2 plan,
//     t3 plan definition, t4 state, t5 reason (state columns NULL: no state)
//   kind 1, one per period_start in [$3, $4) with usage: n1 period_start, n2..n5
//     up_bytes, down_bytes, up_packets, down_packets, n6 max(updated_at),
//     n7..n10 free up/down, zero-rated up/down (summed over gateways)
//   kind 2, one per quota override with cycle_start in [$3, $4): n1 cycle_start,
//     n2 quota_bytes
//   kind 3, one per top-up active at $2: n1 expires_at, n2 id, n3 bytes,
//     n4 created_at; t1 idempotency key
// Times are microseconds since the epoch.
const std::string& find_sql() {
    static const std::string sql = [] {
        const std::string nulls5 = "NULL, NULL, NULL, NULL, NULL";
        return "WITH s AS (SELECT s.id, s.created_at, s.plan, p.definition::text AS definition "
               "FROM subscribers s LEFT JOIN plans p ON p.name = s.plan "
               "WHERE s.external_id = $1 AND s.removed_at IS NULL) "
               "SELECT 0 AS kind, s.id AS n1, " +
               micros_of("s.created_at") + " AS n2, st.down_bps AS n3, st.up_bps AS n4, " +
               micros_of("st.since") +
               " AS n5, NULL::bigint AS n6, NULL::bigint AS n7, NULL::bigint AS n8, "
               "NULL::bigint AS n9, NULL::bigint AS n10, " +
               addresses_at(2) +
               " AS t1, s.plan AS t2, s.definition AS t3, st.state AS t4, st.reason AS t5 "
               "FROM s LEFT JOIN subscriber_state st ON st.subscriber_id = s.id "
               "UNION ALL SELECT 1, " +
               micros_of("u.period_start") + ", " + kUsageSums + micros_of("max(u.updated_at)") +
               ", sum(u.free_up_bytes)::bigint, sum(u.free_down_bytes)::bigint, "
               "sum(u.zero_up_bytes)::bigint, sum(u.zero_down_bytes)::bigint, " +
               nulls5 +
               " FROM s JOIN usage_period u ON u.subscriber_id = s.id "
               "WHERE u.period_start >= " +
               ts(3) + " AND u.period_start < " + ts(4) +
               " GROUP BY u.period_start "
               "UNION ALL SELECT 2, " +
               micros_of("q.cycle_start") + ", q.quota_bytes, NULL, NULL, NULL, NULL, NULL, " +
               "NULL, NULL, NULL, " + nulls5 +
               " FROM s JOIN quota_overrides q ON q.subscriber_id = s.id "
               "WHERE q.cycle_start >= " +
               ts(3) + " AND q.cycle_start < " + ts(4) + " UNION ALL SELECT 3, " +
               micros_of("t.expires_at") + ", t.id, t.bytes, " + micros_of("t.created_at") +
               ", NULL, NULL, NULL, NULL, NULL, NULL, t.idempotency_key, NULL, NULL, NULL, NULL "
               "FROM s JOIN topups t ON t.subscriber_id = s.id "
               "WHERE t.created_at <= " +
               ts(2) + " AND t.expires_at > " + ts(2) + " ORDER BY 1, 2, 3";
    }();
    return sql;
}

std::int64_t bigint_at(const pqxx::row& r, int i) {
    return r[i].as<std::int64_t>();
}

core::TimePoint time_at(const pqxx::row& r, int i) {
    return from_micros(bigint_at(r, i));
}

std::optional<std::uint64_t> optional_count(const pqxx::field& f) {
    return f.is_null() ? std::nullopt : std::optional(f.as<std::uint64_t>());
}

// The kind 0 row: everything but the cycle, its uncounted parts, the quota
// override and the top-ups.
SubscriberDetail subscriber_of(const std::string& external_id, const pqxx::row& r) {
    SubscriberDetail d;
    d.id = r[1].as<core::SubscriberId>();
    d.subscriber = {external_id, time_at(r, 2), split_addresses(r[11]), optional_text(r[12])};
    d.plan_definition = optional_text(r[13]);
    if (!r[14].is_null()) {
        SubscriberStateRecord st;
        st.subscriber_id = d.id;
        st.state = r[14].as<std::string>();
        st.down_bps = optional_count(r[3]);
        st.up_bps = optional_count(r[4]);
        st.reason = r[15].as<std::string>();
        st.since = time_at(r, 5);
        d.state = st;
    }
    return d;
}

// A kind 1 row: one period's sums, added when the period starts in the cycle.
void add_period(SubscriberDetail& d, const pqxx::row& row) {
    const auto period_start = time_at(row, 1);
    if (period_start < d.span.start || period_start >= d.span.end) {
        return;
    }
    const auto sums = usage_of(d.subscriber.external_id, row, 2);
    d.cycle.usage += sums.usage;
    if (sums.updated_at && (!d.cycle.updated_at || *sums.updated_at > *d.cycle.updated_at)) {
        d.cycle.updated_at = sums.updated_at;
    }
    d.uncounted.free_up_bytes += row[7].as<std::uint64_t>();
    d.uncounted.free_down_bytes += row[8].as<std::uint64_t>();
    d.uncounted.zero_up_bytes += row[9].as<std::uint64_t>();
    d.uncounted.zero_down_bytes += row[10].as<std::uint64_t>();
}

// A kind 3 row.
TopUpRecord topup_of(const pqxx::row& row) {
    return {bigint_at(row, 2), row[3].as<std::uint64_t>(), time_at(row, 4), time_at(row, 1),
            optional_text(row[11])};
}

// Rows of kinds 1 and 2 are only used when the whole cycle lies in the window
// they were read from (`in_window`); otherwise they may miss part of it.
void add_rows(SubscriberDetail& d, const pqxx::result& rows, bool in_window) {
    for (const auto& row : rows) {
        const auto kind = row[0].as<int>();
        if (kind == 1 && in_window) {
            add_period(d, row);
        } else if (kind == 2 && in_window && time_at(row, 1) == d.span.start) {
            d.quota_override = row[2].as<std::uint64_t>();
        } else if (kind == 3) {
            d.topups.push_back(topup_of(row));
        }
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
    const auto window_start = now - kWindow;
    const auto window_end = now + kWindow;
    try {
        // One statement needs no BEGIN/COMMIT: it runs in a transaction of its own.
        pqxx::nontransaction txn(db_.connection());
        const auto rows = exec_prepared_sql(txn, find_sql(), external_id, to_micros(now),
                                            to_micros(window_start), to_micros(window_end));
        if (rows.empty() || rows[0][0].as<int>() != 0) {
            return std::nullopt;
        }
        auto d = subscriber_of(external_id, rows[0]);
        d.span = cycle_of(d.subscriber.created_at, d.subscriber.plan, d.plan_definition);
        const bool in_window = d.span.start >= window_start && d.span.end <= window_end;
        d.cycle.external_id = external_id;
        add_rows(d, rows, in_window);
        if (!in_window) {
            read_cycle(txn, d);
            read_quota_override(txn, d);
        }
        return d;
    } catch (...) {
        db_.fail("reading a subscriber");
    }
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
    return page(SubscriberFilter{q, "", "", ""}, after, limit, now);
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
                "AND (($2 = '' AND $7 = '') OR ($2 <> '' AND strpos(lower(s.external_id), "
                "lower($2)) > 0) OR EXISTS (SELECT 1 FROM subscriber_bindings b "
                "WHERE b.subscriber_id = s.id AND b.prefix && NULLIF($7, '')::cidr "
                "AND b.valid_from <= " +
                ts(4) + " AND (b.valid_until IS NULL OR b.valid_until > " + ts(4) +
                "))) "
                "AND ($5 = '' OR s.plan = $5) "
                "AND ($6 = '' OR coalesce(st.state, 'normal') = $6) "
                "ORDER BY s.external_id LIMIT $3",
            after, filter.q, static_cast<std::int64_t>(limit), to_micros(now), filter.plan,
            filter.state, filter.address);
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

// A timestamptz column of microseconds as SQL, for columns of unnest().
std::string ts_of(const std::string& micros) {
    return "('epoch'::timestamptz + " + micros + " * interval '1 microsecond')";
}

struct ExportCandidate {
    core::SubscriberId id = 0;
    std::string external_id;
    core::TimePoint created_at{};
    std::optional<core::TimePoint> removed_at;
    std::optional<std::string> plan;
    std::optional<std::string> definition;
};

// Up to `limit` ids after `after`; per id the active row, else the last removed.
std::vector<ExportCandidate> export_candidates(pqxx::transaction_base& txn,
                                               const std::string& after, std::size_t limit) {
    const auto rows = txn.exec_params(
        "SELECT DISTINCT ON (s.external_id) s.id, s.external_id, " + micros_of("s.created_at") +
            ", " + micros_of("s.removed_at") +
            ", s.plan, p.definition::text FROM subscribers s LEFT JOIN plans p ON p.name = s.plan "
            "WHERE s.external_id > $1 ORDER BY s.external_id, s.removed_at DESC NULLS FIRST "
            "LIMIT $2",
        after, static_cast<std::int64_t>(limit));
    std::vector<ExportCandidate> out;
    out.reserve(rows.size());
    for (const auto& r : rows) {
        ExportCandidate c;
        c.id = r[0].as<core::SubscriberId>();
        c.external_id = r[1].as<std::string>();
        c.created_at = from_micros(r[2].as<std::int64_t>());
        if (!r[3].is_null()) {
            c.removed_at = from_micros(r[3].as<std::int64_t>());
        }
        c.plan = optional_text(r[4]);
        c.definition = optional_text(r[5]);
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace

std::vector<ExportRow> SubscriberQueries::cycle_usage_page(const std::string& after,
                                                           std::size_t limit,
                                                           const CycleOf& cycle_of) {
    try {
        pqxx::transaction<pqxx::repeatable_read> txn(db_.connection());
        std::vector<ExportRow> out;
        std::string next = after;
        // Rows left out (not existing in their cycle) are made up for by reading on.
        while (out.size() < limit) {
            const auto want = limit - out.size();
            const auto candidates = export_candidates(txn, next, want);
            if (candidates.empty()) {
                break;
            }
            std::vector<core::SubscriberId> ids;
            std::vector<std::int64_t> starts;
            std::vector<std::int64_t> ends;
            std::vector<CycleSpan> spans;
            for (const auto& c : candidates) {
                spans.push_back(cycle_of(c.created_at, c.plan, c.definition));
                ids.push_back(c.id);
                starts.push_back(to_micros(spans.back().start));
                ends.push_back(to_micros(spans.back().end));
            }
            const auto sums = txn.exec_params(
                "SELECT q.id, " + std::string(kUsageSums) + micros_of("max(u.updated_at)") +
                    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS q(id, s, e) "
                    "JOIN usage_period u ON u.subscriber_id = q.id AND u.period_start >= " +
                    ts_of("q.s") + " AND u.period_start < " + ts_of("q.e") + " GROUP BY q.id",
                int_array(ids), int_array(starts), int_array(ends));
            std::map<core::SubscriberId, CycleUsage> usage;
            for (const auto& r : sums) {
                usage.emplace(r[0].as<core::SubscriberId>(), usage_of("", r, 1));
            }
            for (std::size_t i = 0; i < candidates.size(); ++i) {
                const auto& c = candidates[i];
                const auto& span = spans[i];
                const auto found = usage.find(c.id);
                const bool existed =
                    c.created_at < span.end && (!c.removed_at || *c.removed_at > span.start);
                if (found == usage.end() && !existed) {
                    continue;
                }
                ExportRow row{c.external_id, c.plan, span, {}, std::nullopt};
                if (found != usage.end()) {
                    row.usage = found->second.usage;
                    row.updated_at = found->second.updated_at;
                }
                out.push_back(std::move(row));
            }
            next = candidates.back().external_id;
            if (candidates.size() < want) {
                break;
            }
        }
        txn.commit();
        return out;
    } catch (...) {
        db_.fail("exporting usage");
    }
}

std::vector<RangeRow> SubscriberQueries::range_usage_page(core::TimePoint from, core::TimePoint to,
                                                          SeriesUnit unit,
                                                          const std::string& after_id,
                                                          core::TimePoint after_start,
                                                          std::size_t limit) {
    return in_transaction(db_, "exporting usage", [&](pqxx::work& txn) {
        // Buckets in UTC whatever the session's TimeZone says.
        const std::string bucket =
            "(date_trunc($6::text, u.hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')";
        const auto rows = txn.exec_params(
            "SELECT s.external_id, " + micros_of(bucket) +
                " AS bucket, (array_agg(s.plan ORDER BY s.removed_at DESC NULLS FIRST))[1], " +
                kUsageSums + micros_of("max(u.updated_at)") +
                " FROM usage_hourly u JOIN subscribers s ON s.id = u.subscriber_id "
                "WHERE u.hour >= " +
                ts(1) + " AND u.hour < " + ts(2) +
                " AND (s.external_id > $3 OR (s.external_id = $3 AND " + bucket + " > " + ts(4) +
                ")) GROUP BY s.external_id, bucket ORDER BY s.external_id, bucket LIMIT $5",
            to_micros(from), to_micros(to), after_id, to_micros(after_start),
            static_cast<std::int64_t>(limit), trunc_field(unit));
        std::vector<RangeRow> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            const auto sums = usage_of("", r, 3);
            out.push_back({r[0].as<std::string>(), optional_text(r[2]),
                           from_micros(r[1].as<std::int64_t>()), sums.usage, sums.updated_at});
        }
        return out;
    });
}

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
