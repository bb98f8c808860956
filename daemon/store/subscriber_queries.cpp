#include "store/subscriber_queries.hpp"

#include "store/sql_util.hpp"

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

}  // namespace

std::optional<SubscriberDetail> SubscriberQueries::find(const std::string& external_id,
                                                        core::TimePoint now,
                                                        core::TimePoint cycle_start) {
    return in_transaction(
        db_, "reading a subscriber", [&](pqxx::work& txn) -> std::optional<SubscriberDetail> {
            const auto rows = txn.exec_params(
                "SELECT s.external_id, " + micros_of("s.created_at") + ", " + addresses_at(2) +
                    ", " + kUsageSums + micros_of("max(u.updated_at)") +
                    " FROM subscribers s LEFT JOIN usage_period u ON u.subscriber_id = s.id "
                    "  AND u.period_start = " +
                    ts(3) + " WHERE s.external_id = $1 AND s.removed_at IS NULL GROUP BY s.id",
                external_id, to_micros(now), to_micros(cycle_start));
            if (rows.empty()) {
                return std::nullopt;
            }
            const auto& r = rows[0];
            SubscriberDetail d;
            d.subscriber = {r[0].as<std::string>(), from_micros(r[1].as<std::int64_t>()),
                            split_addresses(r[2])};
            d.cycle = usage_of(d.subscriber.external_id, r, 3);
            return d;
        });
}

std::vector<SubscriberView> SubscriberQueries::page(const std::string& q, const std::string& after,
                                                    std::size_t limit, core::TimePoint now) {
    return in_transaction(db_, "listing subscribers", [&](pqxx::work& txn) {
        // Every external id is non-empty, so "" sorts before all of them.
        const auto rows = txn.exec_params(
            "SELECT s.external_id, " + micros_of("s.created_at") + ", " + addresses_at(4) +
                " FROM subscribers s WHERE s.removed_at IS NULL AND s.external_id > $1 "
                "AND ($2 = '' OR strpos(lower(s.external_id), lower($2)) > 0) "
                "ORDER BY s.external_id LIMIT $3",
            after, q, static_cast<std::int64_t>(limit), to_micros(now));
        std::vector<SubscriberView> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            out.push_back({r[0].as<std::string>(), from_micros(r[1].as<std::int64_t>()),
                           split_addresses(r[2])});
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
