#include "store/lease_store.hpp"

#include <algorithm>
#include <map>
#include <pqxx/pqxx>
#include <unordered_map>

#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

struct GatewayRow {
    std::uint64_t up = 0, down = 0;
    std::optional<std::uint64_t> ceiling;
    core::TimePoint expires{};
};

using Shares = std::unordered_map<core::SubscriberId, std::map<std::string, GatewayRow>>;

std::string period_of(int ids, int starts) {
    return "unnest($" + std::to_string(ids) + "::bigint[], $" + std::to_string(starts) +
           "::bigint[]) AS k(id, start_us)";
}

const char* kThisCycle = "'epoch'::timestamptz + k.start_us * interval '1 microsecond'";

// Lease times are the database's (now()): one clock for every gateway. The
// engine's own clock (possibly offset, runtime/offset_clock) only measures
// what is left of a lease.
std::uint64_t expire_stale(pqxx::work& txn, const std::string& ids, const std::string& starts) {
    const auto gone = txn.exec_params(
        "DELETE FROM quota_lease l USING " + period_of(1, 2) +
            " WHERE l.subscriber_id = k.id AND (l.expires_at <= now() OR l.period_start <> " +
            kThisCycle + ") RETURNING 1",
        ids, starts);
    return gone.size();
}

void read_shares(pqxx::work& txn, const std::string& ids, const std::string& starts,
                 core::TimePoint now, Shares& out) {
    for (const auto& r : txn.exec_params(
             "SELECT u.subscriber_id, u.gateway_id, u.up_bytes, u.down_bytes FROM " +
                 period_of(1, 2) + " JOIN usage_period u ON u.subscriber_id = k.id AND " +
                 "u.period_start = " + kThisCycle,
             ids, starts)) {
        auto& g = out[r[0].as<core::SubscriberId>()][r[1].as<std::string>()];
        g.up = r[2].as<std::uint64_t>();
        g.down = r[3].as<std::uint64_t>();
    }
    for (const auto& r : txn.exec_params(
             "SELECT l.subscriber_id, l.gateway_id, l.ceiling_bytes, (extract(epoch FROM "
             "l.expires_at - now()) * 1000000)::bigint FROM " +
                 period_of(1, 2) + " JOIN quota_lease l ON l.subscriber_id = k.id",
             ids, starts)) {
        auto& g = out[r[0].as<core::SubscriberId>()][r[1].as<std::string>()];
        g.ceiling = r[2].as<std::uint64_t>();
        g.expires = now + std::chrono::microseconds(r[3].as<std::int64_t>());
    }
}

core::LeaseRequest request_of(const LeaseAsk& ask, const std::string& gateway,
                              const std::map<std::string, GatewayRow>& rows, core::TimePoint now,
                              std::size_t alive) {
    core::LeaseRequest r;
    r.gateways_alive = alive;
    r.block_limit = ask.block_limit;
    r.rate_bytes_per_second = ask.rate_bytes_per_second;
    r.now = now;
    for (const auto& [gw, row] : rows) {
        const core::GatewayShare share{core::counted_of(ask.counts, row.up, row.down), row.ceiling};
        if (gw == gateway) {
            r.own = share;
            r.own_expires = row.expires;
        } else {
            r.others.push_back(share);
        }
    }
    // Unknown history (a restart, a first look): only a subscriber nobody has
    // used or leased yet this cycle, with no other gateway carrying traffic
    // lately, gets a first slice unasked (a lone gateway keeps its whole
    // allowance armed; with several, an unasked slice could sit on the one
    // the subscriber does not use and keep the others from the block tier).
    const bool untouched = alive <= 1 && std::all_of(rows.begin(), rows.end(), [](const auto& g) {
                               return !g.second.ceiling && g.second.up + g.second.down == 0;
                           });
    const auto own = r.own.counted_bytes;
    r.grew = ask.counted_at_last_settle ? own > *ask.counted_at_last_settle : untouched;
    r.grew = r.grew || ask.refused_before;
    r.active = ask.counted_at_last_grant ? own > *ask.counted_at_last_grant : r.grew;
    r.active = r.active || ask.stalled_lately;
    return r;
}

void write_leases(pqxx::work& txn, const std::string& gateway, const std::vector<LeaseAsk>& asks,
                  const std::vector<LeaseOutcome>& outcomes, core::TimePoint now) {
    std::vector<std::int64_t> keep_ids, keep_starts, keep_ceilings, keep_expiry, drop_ids;
    for (std::size_t i = 0; i < asks.size(); ++i) {
        const auto& d = outcomes[i].decision;
        if (d.action == core::LeaseAction::Keep || d.action == core::LeaseAction::Idle) {
            continue;
        }
        if (!d.holds_lease()) {
            drop_ids.push_back(asks[i].id);
            continue;
        }
        keep_ids.push_back(asks[i].id);
        keep_starts.push_back(to_micros(asks[i].cycle_start));
        keep_ceilings.push_back(*checked_bigint(d.ceiling, "lease ceiling"));
        keep_expiry.push_back(
            std::chrono::duration_cast<std::chrono::microseconds>(d.expires_at - now).count());
    }
    if (!keep_ids.empty()) {
        txn.exec_params(
            "INSERT INTO quota_lease (subscriber_id, gateway_id, period_start, ceiling_bytes, "
            "granted_at, expires_at) SELECT k.id, $5, " +
                std::string(kThisCycle) +
                ", k.ceiling, now(), now() + k.ttl_us * interval '1 microsecond' FROM "
                "unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS "
                "k(id, start_us, ceiling, ttl_us) ON CONFLICT (subscriber_id, gateway_id) DO "
                "UPDATE SET period_start = EXCLUDED.period_start, ceiling_bytes = "
                "EXCLUDED.ceiling_bytes, granted_at = EXCLUDED.granted_at, expires_at = "
                "EXCLUDED.expires_at",
            int_array(keep_ids), int_array(keep_starts), int_array(keep_ceilings),
            int_array(keep_expiry), gateway);
    }
    if (!drop_ids.empty()) {
        txn.exec_params(
            "DELETE FROM quota_lease WHERE gateway_id = $2 AND subscriber_id = ANY($1::bigint[])",
            int_array(drop_ids), gateway);
    }
}

}  // namespace

LeaseBatch LeaseStore::settle(const std::string& gateway, const std::vector<LeaseAsk>& asks,
                              const core::LeaseSettings& settings, core::TimePoint now) {
    if (asks.empty()) {
        return {};
    }
    return in_transaction(db_, "leasing quota slices", [&](pqxx::work& txn) {
        std::vector<core::SubscriberId> id_list;
        std::vector<std::int64_t> start_list;
        for (const auto& a : asks) {
            id_list.push_back(a.id);
            start_list.push_back(to_micros(a.cycle_start));
        }
        const auto ids = int_array(id_list);
        const auto starts = int_array(start_list);
        // Ordered, so that two gateways locking overlapping sets cannot deadlock.
        txn.exec_params(
            "SELECT 1 FROM subscribers WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE",
            ids);
        LeaseBatch batch;
        batch.expired = expire_stale(txn, ids, starts);
        Shares shares;
        read_shares(txn, ids, starts, now, shares);
        // The database's clock: flushed_at is its now() (the engine's may be offset).
        const auto alive =
            txn.exec_params(
                   "SELECT count(*) FROM gateway_flush WHERE flushed_at > now() - $1 * "
                   "interval '1 microsecond'",
                   std::chrono::duration_cast<std::chrono::microseconds>(settings.ttl)
                       .count())[0][0]
                .as<std::size_t>();
        for (const auto& a : asks) {
            const auto r = request_of(a, gateway, shares[a.id], now, alive);
            batch.outcomes.push_back(
                LeaseOutcome{a.id, r.own.counted_bytes, core::decide_lease(settings, r)});
        }
        write_leases(txn, gateway, asks, batch.outcomes, now);
        return batch;
    });
}

}  // namespace ctquota::store
