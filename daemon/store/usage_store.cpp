#include "store/usage_store.hpp"

#include <pqxx/pqxx>

#include "core/checkpoint_codec.hpp"
#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

// Column arrays for one set-based upsert: key columns + the four counters.
struct Columns {
    std::vector<std::int64_t> subscriber, time_us, up_bytes, down_bytes, up_packets, down_packets;

    void add(std::int64_t sub, core::TimePoint t, const core::Usage& u) {
        subscriber.push_back(sub);
        time_us.push_back(to_micros(t));
        up_bytes.push_back(static_cast<std::int64_t>(u.up.bytes));
        down_bytes.push_back(static_cast<std::int64_t>(u.down.bytes));
        up_packets.push_back(static_cast<std::int64_t>(u.up.packets));
        down_packets.push_back(static_cast<std::int64_t>(u.down.packets));
    }
};

// The unnest source shared by the three upserts; GROUP BY makes each key
// appear once, as ON CONFLICT DO UPDATE requires.
constexpr const char* kSource =
    "SELECT s, 'epoch'::timestamptz + t * interval '1 microsecond' AS t, sum(ub)::bigint AS ub, "
    "sum(db)::bigint AS db, sum(up)::bigint AS up, sum(dp)::bigint AS dp "
    "FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], "
    "$7::bigint[]) AS x(s, t, ub, db, up, dp) GROUP BY s, t";

constexpr const char* kAddCounters =
    " up_bytes = u.up_bytes + excluded.up_bytes, down_bytes = u.down_bytes + excluded.down_bytes,"
    " up_packets = u.up_packets + excluded.up_packets,"
    " down_packets = u.down_packets + excluded.down_packets, updated_at = now()";

void upsert(pqxx::work& txn, const std::string& gateway, const std::string& table,
            const std::string& key_columns, const std::string& values, const Columns& c) {
    if (c.subscriber.empty()) {
        return;
    }
    txn.exec_params("INSERT INTO " + table + " AS u (" + key_columns +
                        ", up_bytes, down_bytes, up_packets, down_packets) "
                        "SELECT " +
                        values + " FROM (" + kSource +
                        ") src "
                        "ON CONFLICT (" +
                        key_columns + ") DO UPDATE SET" + kAddCounters,
                    gateway, int_array(c.subscriber), int_array(c.time_us), int_array(c.up_bytes),
                    int_array(c.down_bytes), int_array(c.up_packets), int_array(c.down_packets));
}

}  // namespace

UsageStore::UsageStore(Database& db, std::string gateway_id)
    : db_(db), gateway_id_(std::move(gateway_id)) {}

void UsageStore::flush(const core::FlushBatch& batch) {
    Columns periods, hours, unattributed;
    for (const auto& p : batch.usage.periods) {
        periods.add(p.subscriber, p.period_start, p.usage);
    }
    for (const auto& h : batch.usage.hours) {
        hours.add(h.subscriber, h.hour, h.usage);
    }
    for (const auto& h : batch.usage.unattributed) {
        unattributed.add(0, h.hour, h.usage);
    }
    std::string blob;
    if (!batch.checkpoint.empty()) {
        blob = core::encode_checkpoint(batch.checkpoint);
    }
    try {
        pqxx::work txn(db_.connection());
        upsert(txn, gateway_id_, "usage_period", "subscriber_id, period_start, gateway_id",
               "s, t, $1, ub, db, up, dp", periods);
        upsert(txn, gateway_id_, "usage_hourly", "subscriber_id, hour, gateway_id",
               "s, t, $1, ub, db, up, dp", hours);
        upsert(txn, gateway_id_, "usage_unattributed", "gateway_id, hour", "$1, t, ub, db, up, dp",
               unattributed);
        if (!blob.empty()) {
            auto seq = txn.exec_params(
                "INSERT INTO ledger_checkpoint (gateway_id, is_snapshot, data) VALUES ($1, $2, $3) "
                "RETURNING seq",
                gateway_id_, batch.checkpoint.snapshot,
                pqxx::binarystring(blob.data(), blob.size()));
            if (batch.checkpoint.snapshot) {
                txn.exec_params("DELETE FROM ledger_checkpoint WHERE gateway_id = $1 AND seq < $2",
                                gateway_id_, seq[0][0].as<std::int64_t>());
            }
        }
        txn.commit();
    } catch (const pqxx::broken_connection& e) {
        db_.reset();
        throw DatabaseError(std::string("flush: connection lost: ") + e.what());
    } catch (const pqxx::in_doubt_error& e) {
        db_.reset();
        throw DatabaseError(std::string("flush: commit outcome unknown: ") + e.what());
    } catch (const pqxx::failure& e) {
        throw DatabaseError(std::string("flush failed: ") + e.what());
    }
    if (batch.checkpoint.snapshot) {
        last_snapshot_ = blob.size();
        since_snapshot_ = 0;
    } else {
        since_snapshot_ += blob.size();
    }
}

std::vector<core::CheckpointEntry> UsageStore::load_checkpoint() {
    std::vector<core::CheckpointChanges> log;
    try {
        pqxx::work txn(db_.connection());
        auto rows = txn.exec_params(
            "SELECT is_snapshot, data FROM ledger_checkpoint WHERE gateway_id = $1 AND seq >= "
            "coalesce((SELECT max(seq) FROM ledger_checkpoint WHERE gateway_id = $1 AND "
            "is_snapshot), 0) "
            "ORDER BY seq",
            gateway_id_);
        since_snapshot_ = 0;
        for (const auto& r : rows) {
            const pqxx::binarystring data(r[1]);
            auto changes = core::decode_checkpoint(data.str());
            if (!changes) {
                throw DatabaseError("ledger checkpoint of gateway '" + gateway_id_ +
                                    "' is corrupt; refusing to start (counting without it would "
                                    "double count live connections)");
            }
            (r[0].as<bool>() ? last_snapshot_ : since_snapshot_) += data.size();
            log.push_back(std::move(*changes));
        }
        txn.commit();
    } catch (const pqxx::broken_connection& e) {
        db_.reset();
        throw DatabaseError(std::string("loading the checkpoint: connection lost: ") + e.what());
    } catch (const pqxx::failure& e) {
        throw DatabaseError(std::string("loading the checkpoint failed: ") + e.what());
    }
    return core::replay_checkpoints(log);
}

}  // namespace ctquota::store
