// Reads of the flow log: who held a public address and port at a time.

#include <pqxx/pqxx>

#include "store/flow_log_store.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

// One row per connection (its final record if it has one, else its latest
// interim record) whose records span $3: started at or before it, and a
// record at or after it. The index flow_log_public finds the records of the
// address and port from $3 on; the partitions before $3 are pruned at
// planning ($3 is a constant there). Optional filters are '' when unset.
constexpr const char* kNatHolders =
    "SELECT * FROM ("
    " SELECT DISTINCT ON (f.gateway_id, f.flow_id, f.flow_start)"
    "  s.external_id, f.gateway_id, f.l4proto,"
    "  host(f.orig_src), f.orig_sport, host(f.orig_dst), f.orig_dport,"
    "  host(f.reply_src), f.reply_sport, host(f.reply_dst), f.reply_dport,"
    "  (extract(epoch from f.flow_start) * 1000000)::bigint AS start_us, f.start_first_seen,"
    "  (extract(epoch from f.flow_end) * 1000000)::bigint, f.final,"
    "  f.orig_bytes, f.orig_packets, f.reply_bytes, f.reply_packets, f.conntrack_id"
    " FROM flow_log f LEFT JOIN subscribers s ON s.id = f.subscriber_id"
    " WHERE f.public_address = $1::inet AND f.public_port = $2"
    "  AND f.flow_end >= $3::timestamptz AND f.flow_start <= $3::timestamptz"
    "  AND (NULLIF($4, '') IS NULL OR f.l4proto = NULLIF($4, '')::smallint)"
    "  AND (NULLIF($5, '') IS NULL OR"
    "       (CASE WHEN f.direction = 2 THEN f.orig_src ELSE f.reply_src END) = NULLIF($5, "
    "'')::inet)"
    "  AND (NULLIF($6, '') IS NULL OR"
    "       (CASE WHEN f.direction = 2 THEN f.orig_sport ELSE f.reply_sport END) ="
    "       NULLIF($6, '')::integer)"
    " ORDER BY f.gateway_id, f.flow_id, f.flow_start, f.final DESC, f.flow_end DESC"
    ") x ORDER BY start_us, 2 LIMIT $7";

Endpoint endpoint(const pqxx::row& r, int column) {
    return {r[column].as<std::string>(), r[column + 1].as<std::uint16_t>()};
}

template <typename T>
std::string optional_text(const std::optional<T>& v) {
    if constexpr (std::is_same_v<T, std::string>) {
        return v.value_or("");
    } else {
        return v ? std::to_string(*v) : std::string();
    }
}

NatHolder holder_of(const pqxx::row& r) {
    NatHolder h;
    if (!r[0].is_null()) {
        h.subscriber = r[0].as<std::string>();
    }
    h.gateway_id = r[1].as<std::string>();
    h.l4proto = static_cast<std::uint8_t>(r[2].as<int>());
    h.original_src = endpoint(r, 3);
    h.original_dst = endpoint(r, 5);
    h.reply_src = endpoint(r, 7);
    h.reply_dst = endpoint(r, 9);
    h.start = from_micros(r[11].as<std::int64_t>());
    h.start_first_seen = r[12].as<bool>();
    h.last_seen = from_micros(r[13].as<std::int64_t>());
    h.ended = r[14].as<bool>();
    h.orig = {r[15].as<std::uint64_t>(), r[16].as<std::uint64_t>()};
    h.reply = {r[17].as<std::uint64_t>(), r[18].as<std::uint64_t>()};
    h.conntrack_id = r[19].as<std::uint64_t>();
    return h;
}

}  // namespace

std::vector<NatHolder> FlowLogQueries::nat_holders(const NatLookup& q, std::size_t limit) {
    return in_transaction(db_, "looking up the flow log", [&](pqxx::work& txn) {
        const auto rows = txn.exec_params(
            kNatHolders, q.address, static_cast<int>(q.port),
            flow_log_timestamp(q.at.time_since_epoch().count()),
            optional_text(q.l4proto ? std::optional<int>(*q.l4proto) : std::nullopt),
            optional_text(q.remote_address),
            optional_text(q.remote_port ? std::optional<int>(*q.remote_port) : std::nullopt),
            static_cast<std::int64_t>(limit));
        std::vector<NatHolder> out;
        out.reserve(rows.size());
        for (const auto& r : rows) {
            out.push_back(holder_of(r));
        }
        return out;
    });
}

}  // namespace ctquota::store
