#include "store/usage_store.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <pqxx/pqxx>
#include <tuple>

#include "core/checkpoint_codec.hpp"
#include "core/usage_notice.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

// One row of an upsert: key (subscriber, time) and the counters to add.
struct Row {
    std::int64_t subscriber = 0;
    std::int64_t time_us = 0;
    core::Usage usage;
};

// Column arrays for one set-based upsert: key columns + the four counters,
// each key once (ON CONFLICT DO UPDATE may touch a row only once per
// statement). Duplicates are summed here: a GROUP BY in SQL did the same but
// cost a third of the flush (tests/bench/RESULTS.md).
struct Columns {
    std::vector<std::int64_t> subscriber, time_us, up_bytes, down_bytes, up_packets, down_packets;

    explicit Columns(std::vector<Row> rows) {
        std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
            return std::tie(a.subscriber, a.time_us) < std::tie(b.subscriber, b.time_us);
        });
        for (std::size_t i = 0; i < rows.size();) {
            Row merged = rows[i];
            for (++i; i < rows.size() && rows[i].subscriber == merged.subscriber &&
                      rows[i].time_us == merged.time_us;
                 ++i) {
                merged.usage += rows[i].usage;
            }
            add(merged);
        }
    }

    void add(const Row& r) {
        subscriber.push_back(r.subscriber);
        time_us.push_back(r.time_us);
        up_bytes.push_back(static_cast<std::int64_t>(r.usage.up.bytes));
        down_bytes.push_back(static_cast<std::int64_t>(r.usage.down.bytes));
        up_packets.push_back(static_cast<std::int64_t>(r.usage.up.packets));
        down_packets.push_back(static_cast<std::int64_t>(r.usage.down.packets));
    }
};

template <typename T, typename KeyFn>
std::vector<Row> rows_of(const std::vector<T>& items, KeyFn key) {
    std::vector<Row> rows;
    rows.reserve(items.size());
    for (const auto& item : items) {
        const auto [subscriber, time] = key(item);
        rows.push_back(Row{subscriber, to_micros(time), item.usage});
    }
    return rows;
}

// The unnest source shared by the three upserts. The arrays travel as six text
// parameters, whatever the batch size; Columns made each key unique.
constexpr const char* kSource =
    "SELECT s, 'epoch'::timestamptz + t * interval '1 microsecond' AS t, ub, db, up, dp "
    "FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], "
    "$7::bigint[]) AS x(s, t, ub, db, up, dp)";

constexpr const char* kAddCounters =
    " up_bytes = u.up_bytes + excluded.up_bytes, down_bytes = u.down_bytes + excluded.down_bytes,"
    " up_packets = u.up_packets + excluded.up_packets,"
    " down_packets = u.down_packets + excluded.down_packets, updated_at = now()";

// `table`, `key_columns` and `values` are constants of this file, never input.
void upsert(pqxx::work& txn, const std::string& gateway, const std::string& table,
            const std::string& key_columns, const std::string& values, const Columns& c) {
    if (c.subscriber.empty()) {
        return;
    }
    txn.exec_params("INSERT INTO " + table + " AS u (" + key_columns +
                        ", up_bytes, down_bytes, up_packets, down_packets) SELECT " + values +
                        " FROM (" + kSource + ") src ON CONFLICT (" + key_columns +
                        ") DO UPDATE SET" + kAddCounters,
                    gateway, int_array(c.subscriber), int_array(c.time_us), int_array(c.up_bytes),
                    int_array(c.down_bytes), int_array(c.up_packets), int_array(c.down_packets));
}

// Period rows: each (subscriber, period) once per batch (the accumulator's
// take() groups them), with the cycle's end and the uncounted parts.
void upsert_periods(pqxx::work& txn, const std::string& gateway,
                    const std::vector<core::PeriodUsage>& periods) {
    if (periods.empty()) {
        return;
    }
    // Each key once (ON CONFLICT DO UPDATE may touch a row only once per statement).
    std::map<std::pair<core::SubscriberId, std::int64_t>, core::PeriodUsage> unique;
    for (const auto& p : periods) {
        auto [it, inserted] = unique.try_emplace({p.subscriber, to_micros(p.period_start)}, p);
        if (!inserted) {
            static_cast<core::ClassifiedUsage&>(it->second) += p;
        }
    }
    std::vector<std::int64_t> sub, start, end, ub, db, up, dp, fu, fd, zu, zd;
    const auto i64 = [](std::uint64_t v) { return static_cast<std::int64_t>(v); };
    for (const auto& [key, p] : unique) {
        sub.push_back(p.subscriber);
        start.push_back(to_micros(p.period_start));
        end.push_back(to_micros(p.period_end));
        ub.push_back(i64(p.usage.up.bytes));
        db.push_back(i64(p.usage.down.bytes));
        up.push_back(i64(p.usage.up.packets));
        dp.push_back(i64(p.usage.down.packets));
        fu.push_back(i64(p.free.up.bytes));
        fd.push_back(i64(p.free.down.bytes));
        zu.push_back(i64(p.zero_rated.up.bytes));
        zd.push_back(i64(p.zero_rated.down.bytes));
    }
    txn.exec_params(
        "INSERT INTO usage_period AS u (subscriber_id, period_start, gateway_id, period_end, "
        "up_bytes, down_bytes, up_packets, down_packets, free_up_bytes, free_down_bytes, "
        "zero_up_bytes, zero_down_bytes) "
        "SELECT s, 'epoch'::timestamptz + t * interval '1 microsecond', $1, "
        "'epoch'::timestamptz + e * interval '1 microsecond', ub, db, up, dp, fu, fd, zu, zd "
        "FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], "
        "$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[]) "
        "AS x(s, t, e, ub, db, up, dp, fu, fd, zu, zd) "
        "ON CONFLICT (subscriber_id, period_start, gateway_id) DO UPDATE SET" +
            std::string(kAddCounters) +
            ", period_end = excluded.period_end, "
            "free_up_bytes = u.free_up_bytes + excluded.free_up_bytes, "
            "free_down_bytes = u.free_down_bytes + excluded.free_down_bytes, "
            "zero_up_bytes = u.zero_up_bytes + excluded.zero_up_bytes, "
            "zero_down_bytes = u.zero_down_bytes + excluded.zero_down_bytes",
        gateway, int_array(sub), int_array(start), int_array(end), int_array(ub), int_array(db),
        int_array(up), int_array(dp), int_array(fu), int_array(fd), int_array(zu), int_array(zd));
}

// Tells the other gateways which subscribers this flush changed (they
// re-evaluate them: quotas follow the sum). Delivered at COMMIT, with it.
void notify_usage(pqxx::work& txn, const std::string& gateway,
                  const std::vector<core::PeriodUsage>& periods) {
    std::vector<core::SubscriberId> ids;
    ids.reserve(periods.size());
    for (const auto& p : periods) {
        ids.push_back(p.subscriber);
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    if (ids.empty()) {
        return;
    }
    const auto payloads = core::encode_usage_notices(gateway, ids);
    if (payloads.empty()) {  // too many to list: the rows this transaction touched
        txn.exec_params("SELECT pg_notify('ctquota_usage', $1 || " + micros_of("now()") + "::text)",
                        core::since_prefix(gateway));
        return;
    }
    txn.exec_params(
        "SELECT pg_notify('ctquota_usage', p) FROM jsonb_array_elements_text($1::jsonb) p",
        nlohmann::json(payloads).dump());
}

}  // namespace

UsageStore::UsageStore(Database& db, std::string gateway_id)
    : db_(db), gateway_id_(std::move(gateway_id)), tokens_(std::random_device{}()) {}

void UsageStore::flush(const core::FlushBatch& batch) {
    if (in_doubt_) {
        throw InDoubtError("flush: the previous flush is still in doubt; resolve it first");
    }
    const Columns hours(rows_of(batch.usage.hours, [](const core::HourUsage& h) {
        return std::pair{h.subscriber, h.hour};
    }));
    const Columns unattributed(rows_of(batch.usage.unattributed, [](const core::HourUsage& h) {
        return std::pair{core::SubscriberId{0}, h.hour};
    }));
    std::string blob;
    if (!batch.checkpoint.empty()) {
        blob = core::encode_checkpoint(batch.checkpoint);
    }
    const auto token = static_cast<std::int64_t>(tokens_());
    try {
        pqxx::work txn(db_.connection());
        // First: the row lock on this gateway's row serialises its flushes.
        const auto as_bigint = [](std::uint64_t v) { return static_cast<std::int64_t>(v); };
        txn.exec_params(
            "INSERT INTO gateway_flush (gateway_id, flush_token, journal_id, journal_position) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (gateway_id) DO UPDATE SET "
            "flush_token = excluded.flush_token, flushed_at = now(), "
            // Without a journal the last position stored stays: a journal enabled
            // again still knows which of its events were counted.
            "journal_id = coalesce(excluded.journal_id, gateway_flush.journal_id), "
            "journal_position = coalesce(excluded.journal_position, "
            "gateway_flush.journal_position)",
            gateway_id_, token, journal_id_ ? std::optional(as_bigint(*journal_id_)) : std::nullopt,
            journal_id_ ? std::optional(as_bigint(batch.journal_position)) : std::nullopt);
        upsert_periods(txn, gateway_id_, batch.usage.periods);
        notify_usage(txn, gateway_id_, batch.usage.periods);
        upsert(txn, gateway_id_, "usage_hourly", "subscriber_id, hour, gateway_id",
               "s, t, $1, ub, db, up, dp", hours);
        upsert(txn, gateway_id_, "usage_unattributed", "gateway_id, hour", "$1, t, ub, db, up, dp",
               unattributed);
        if (!batch.checkpoint.empty()) {
            const auto seq = txn.exec_params(
                "INSERT INTO ledger_checkpoint (gateway_id, is_snapshot, data) VALUES ($1, $2, $3) "
                "RETURNING seq",
                gateway_id_, batch.checkpoint.snapshot,
                pqxx::binarystring(blob.data(), blob.size()));
            if (batch.checkpoint.snapshot) {
                // Compaction: the snapshot replaces everything before it.
                txn.exec_params("DELETE FROM ledger_checkpoint WHERE gateway_id = $1 AND seq < $2",
                                gateway_id_, seq[0][0].as<std::int64_t>());
            }
        }
        txn.commit();
    } catch (const pqxx::in_doubt_error&) {
        db_.reset();
        in_doubt_ = token;
        const auto outcome = resolve_in_doubt();
        if (!outcome) {
            throw InDoubtError(
                "flush: connection lost during COMMIT and the database cannot be asked yet "
                "whether it committed; the batch is held until it can");
        }
        if (!*outcome) {
            throw DatabaseError("flush: connection lost during COMMIT; the flush did not commit");
        }
        spdlog::warn("flush: connection lost during COMMIT, but the flush had committed");
    } catch (...) {
        db_.fail("flush");
    }
    last_token_ = static_cast<std::uint64_t>(token);
    if (batch.checkpoint.snapshot) {
        last_snapshot_ = blob.size();
        since_snapshot_ = 0;
    } else {
        since_snapshot_ += blob.size();
    }
}

std::optional<bool> UsageStore::resolve_in_doubt() {
    if (!in_doubt_) {
        return std::nullopt;
    }
    const auto outcome = committed(*in_doubt_);
    if (outcome) {
        if (*outcome) {
            last_token_ = static_cast<std::uint64_t>(*in_doubt_);
        }
        in_doubt_.reset();
    }
    return outcome;
}

std::optional<bool> UsageStore::committed(std::int64_t token) {
    try {
        pqxx::work txn(db_.connection());
        // A COMMIT still in progress holds the row lock: wait for its outcome, briefly.
        txn.exec("SET LOCAL lock_timeout = '5s'");
        const auto r = txn.exec_params(
            "SELECT flush_token FROM gateway_flush WHERE gateway_id = $1 FOR UPDATE", gateway_id_);
        txn.commit();
        return !r.empty() && r[0][0].as<std::int64_t>() == token;
    } catch (const std::exception& e) {
        spdlog::warn("flush: cannot find out whether the last flush committed: {}",
                     db_.redact(e.what()));
        db_.reset();
        return std::nullopt;
    }
}

StoredFlush UsageStore::load_stored_flush() {
    StoredFlush stored;
    try {
        pqxx::work txn(db_.connection());
        const auto r = txn.exec_params(
            "SELECT flush_token, journal_id, journal_position FROM gateway_flush "
            "WHERE gateway_id = $1",
            gateway_id_);
        txn.commit();
        const auto u64 = [](const pqxx::field& f) {
            return static_cast<std::uint64_t>(f.as<std::int64_t>());
        };
        if (!r.empty()) {
            stored.token = u64(r[0][0]);
            if (!r[0][1].is_null() && !r[0][2].is_null()) {
                stored.journal = JournalMark{u64(r[0][1]), u64(r[0][2])};
            }
        }
    } catch (...) {
        db_.fail("loading the last flush");
    }
    last_token_ = stored.token;
    return stored;
}

std::vector<core::CheckpointEntry> UsageStore::load_checkpoint() {
    std::vector<core::CheckpointChanges> log;
    std::size_t snapshot_bytes = 0;
    std::size_t delta_bytes = 0;
    try {
        pqxx::work txn(db_.connection());
        const auto rows = txn.exec_params(
            "SELECT seq, is_snapshot, data FROM ledger_checkpoint WHERE gateway_id = $1 AND seq >= "
            "coalesce((SELECT max(seq) FROM ledger_checkpoint WHERE gateway_id = $1 AND "
            "is_snapshot), 0) ORDER BY seq",
            gateway_id_);
        txn.commit();
        log.reserve(rows.size());
        for (const auto& r : rows) {
            const pqxx::binarystring data(r[2]);
            auto changes = core::decode_checkpoint(data.str());
            const bool snapshot = r[1].as<bool>();
            if (!changes || changes->snapshot != snapshot) {
                throw DatabaseError("ledger checkpoint row " + r[0].as<std::string>() +
                                    " of gateway '" + gateway_id_ +
                                    "' is corrupt; refusing to start (counting without it would "
                                    "double count live connections)");
            }
            (snapshot ? snapshot_bytes : delta_bytes) += data.size();
            log.push_back(std::move(*changes));
        }
    } catch (...) {
        db_.fail("loading the ledger checkpoint");
    }
    last_snapshot_ = snapshot_bytes;
    since_snapshot_ = delta_bytes;
    return core::replay_checkpoints(log);
}

}  // namespace ctquota::store
