// The change path of the Enforcer: one tc batch (classes first), one nft
// transaction (bisected when it is rejected), class deletions,
// conntrack deletion for new blocks, then the cache of what is installed.
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "enforce/conntrack_flush.hpp"
#include "enforce/enforcer_impl.hpp"

namespace ctquota::enforce {
namespace {

void record(ReconcileReport& report, std::string message) {
    spdlog::error("enforce: {}", message);
    report.errors.push_back(std::move(message));
}

std::string who(core::SubscriberId id) {
    return id == 0 ? std::string("unowned entries") : "subscriber " + std::to_string(id);
}

// From this many deletions in one map on, the map is refilled instead.
constexpr std::size_t kRefillFromDeletions = 32;

}  // namespace

// Every element of `set` once the changes of `changed` are applied: the
// other subscribers' from the cache, the changed ones' from `wants`.
std::vector<std::pair<core::SubscriberId, Element>> Enforcer::Impl::contents_after(
    const std::string& set, const std::set<core::SubscriberId>& changed,
    const std::map<core::SubscriberId, SubscriberItems>& wants) const {
    std::vector<std::pair<core::SubscriberId, Element>> out;
    auto take = [&](core::SubscriberId id, const SubscriberItems& items) {
        for (const auto& e : items.elements) {
            if (e.set == set) {
                out.emplace_back(id, e);
            }
        }
    };
    for (const auto& [id, items] : installed) {
        if (!changed.contains(id)) {
            take(id, items);
        }
    }
    for (const auto& [id, items] : wants) {
        if (id != 0 && changed.contains(id)) {
            take(id, items);
        }
    }
    return out;
}

// A prefix that now belongs to one of `changes` but is still installed for a
// subscriber not in `changes` (a dynamic address moved): that subscriber's
// elements for it go first, or the map would refuse the new owner's.
void Enforcer::Impl::release_moved_prefixes(const std::vector<SubscriberTarget>& changes,
                                            std::vector<SubscriberDelta>& deltas,
                                            std::map<core::SubscriberId, SubscriberItems>& wants) {
    std::set<core::SubscriberId> listed;
    std::map<core::Prefix, core::SubscriberId> wanted;
    for (const auto& t : changes) {
        listed.insert(t.id);
        for (const auto& p : t.prefixes) {
            wanted.emplace(p, t.id);
        }
    }
    for (const auto& [id, items] : installed) {
        if (listed.contains(id)) {
            continue;
        }
        SubscriberDelta d;
        d.id = id;
        SubscriberItems kept = items;
        std::erase_if(kept.elements, [&](const Element& e) {
            auto it = wanted.find(e.key);
            if (it == wanted.end()) {
                return false;
            }
            d.del_elements.push_back(e);
            return true;
        });
        if (!d.del_elements.empty()) {
            spdlog::info("enforce: {} moved from subscriber {} to subscriber {}",
                         d.del_elements.front().key.to_string(), id,
                         wanted.at(d.del_elements.front().key));
            wants[id] = std::move(kept);
            deltas.push_back(std::move(d));
        }
    }
}

// HTB classes go first: nft may point at them once they exist. Returns the
// subscribers whose classes the kernel refused.
std::set<core::SubscriberId> Enforcer::Impl::set_classes(const std::vector<SubscriberDelta>& deltas,
                                                         ReconcileReport& report) {
    std::set<core::SubscriberId> failed;
    std::vector<TcOp> sets;
    std::vector<core::SubscriberId> set_owner;
    for (const auto& d : deltas) {
        for (const auto& c : d.tc_set) {
            sets.push_back(
                TcOp{TcOp::Kind::Set, c.classid, c.rate_bps, who(d.id), d.tc_queue_in_place});
            set_owner.push_back(d.id);
        }
    }
    if (tc && !sets.empty()) {
        auto r = tc->run(sets);
        report.tc_messages += r.messages;
        for (const auto& [i, msg] : r.errors) {
            record(report, sets[i].who + ": set HTB class " + classid_text(sets[i].classid) +
                               " rate " + std::to_string(sets[i].rate_bps) + " bit/s on " +
                               cfg.subscriber_interface + ": " + msg);
            failed.insert(set_owner[i]);
        }
        // Throttled all the same, behind HTB's pfifo; a reconcile tries again.
        for (const auto& [i, msg] : r.leaf_errors) {
            record(report, sets[i].who + ": leaf queue (tbf) of HTB class " +
                               classid_text(sets[i].classid) + " on " + cfg.subscriber_interface +
                               ": " + msg);
        }
    }
    return failed;
}

nftjson::Batch Enforcer::Impl::build_batch(
    std::span<const SubscriberDelta> deltas,
    const std::map<core::SubscriberId, SubscriberItems>& wants,
    const std::set<core::SubscriberId>& committed) const {
    nftjson::Batch batch(cfg.table);
    std::map<std::string, std::size_t> deletions;
    std::set<core::SubscriberId> changed = committed;
    for (const auto& d : deltas) {
        batch.add(d);
        changed.insert(d.id);
        for (const auto& e : d.del_elements) {
            ++deletions[e.set];
        }
    }
    for (const auto& [set, n] : deletions) {
        // Only with a cache that knows every element (unowned ones stay put).
        if (n >= kRefillFromDeletions && cache_valid && !installed.contains(0)) {
            batch.replace(set, contents_after(set, changed, wants));
        }
    }
    return batch;
}

// One nft transaction for everything; on rejection the plans' set contents
// alone, then the subscribers' changes bisected, so that one refused change
// does not hold back the others. Returns the subscribers whose changes the
// kernel refused.
std::set<core::SubscriberId> Enforcer::Impl::run_nft(
    const std::vector<SubscriberDelta>& deltas,
    const std::map<core::SubscriberId, SubscriberItems>& wants, const nlohmann::json& before,
    ReconcileReport& report) {
    std::set<core::SubscriberId> committed;
    const nftjson::Batch batch = build_batch(deltas, wants, committed);
    if (batch.commands() == 0 && before.empty()) {
        return {};
    }
    ++report.nft_transactions;
    report.nft_commands += batch.commands() + before.size();
    auto err = nft.run(batch.build(before));
    if (err.empty()) {
        return {};
    }
    spdlog::warn("enforce: nft transaction of {} commands rejected ({}); bisecting {} changes",
                 batch.commands() + before.size(), err, deltas.size());
    if (!before.empty()) {
        ++report.nft_transactions;
        if (auto e2 = nft.run(nlohmann::json{{"nftables", before}}); !e2.empty()) {
            record(report, "updating the always-allowed sets of the plans: " + e2);
        }
    }
    const std::size_t transactions = report.nft_transactions;
    auto failed = bisect(deltas, wants, committed, report);
    spdlog::warn("enforce: {} of {} changes refused, found in {} transactions", failed.size(),
                 deltas.size(), report.nft_transactions - transactions);
    return failed;
}

std::set<core::SubscriberId> Enforcer::Impl::bisect(
    std::span<const SubscriberDelta> deltas,
    const std::map<core::SubscriberId, SubscriberItems>& wants,
    std::set<core::SubscriberId>& committed, ReconcileReport& report) {
    if (deltas.empty()) {
        return {};
    }
    if (deltas.size() > 1) {
        const auto half = deltas.size() / 2;
        auto failed = try_or_bisect(deltas.first(half), wants, committed, report);
        failed.merge(try_or_bisect(deltas.subspan(half), wants, committed, report));
        return failed;
    }
    const auto& d = deltas.front();
    if (d.nft_commands() == 0) {
        return {};
    }
    nftjson::Batch one(cfg.table);
    one.add(d);
    ++report.nft_transactions;
    if (auto e = nft.run(one.build()); !e.empty()) {
        record(report, who(d.id) + ": " + describe(d) + ": " + e);
        return {d.id};
    }
    committed.insert(d.id);
    return {};
}

// One transaction for `deltas`; bisected when the kernel refuses it.
std::set<core::SubscriberId> Enforcer::Impl::try_or_bisect(
    std::span<const SubscriberDelta> deltas,
    const std::map<core::SubscriberId, SubscriberItems>& wants,
    std::set<core::SubscriberId>& committed, ReconcileReport& report) {
    if (deltas.size() == 1) {
        return bisect(deltas, wants, committed, report);
    }
    const auto batch = build_batch(deltas, wants, committed);
    if (batch.commands() == 0) {
        return {};
    }
    ++report.nft_transactions;
    if (nft.run(batch.build()).empty()) {
        for (const auto& d : deltas) {
            committed.insert(d.id);
        }
        return {};
    }
    return bisect(deltas, wants, committed, report);
}

// Classes nothing points at any more: not those of subscribers whose nft
// change failed, their old elements may still point at them.
void Enforcer::Impl::delete_classes(const std::vector<SubscriberDelta>& deltas,
                                    const std::set<core::SubscriberId>& nft_failed,
                                    ReconcileReport& report) {
    std::vector<TcOp> dels;
    for (const auto& d : deltas) {
        if (nft_failed.contains(d.id)) {
            continue;
        }
        for (auto classid : d.tc_del) {
            dels.push_back(TcOp{TcOp::Kind::Delete, classid, 0, who(d.id)});
        }
    }
    if (!tc || dels.empty()) {
        return;
    }
    auto r = tc->run(dels);
    report.tc_messages += r.messages;
    for (const auto& [i, msg] : r.errors) {
        if (msg != std::strerror(ENOENT)) {
            record(report, dels[i].who + ": delete HTB class " + classid_text(dels[i].classid) +
                               ": " + msg);
        }
    }
    for (std::size_t i = 0; i < dels.size(); ++i) {
        used_classids.erase(dels[i].classid);
    }
}

// Established connections of newly blocked subscribers (why: see
// conntrack_flush.hpp), but only where the block is in place.
void Enforcer::Impl::flush_blocked(const std::vector<SubscriberDelta>& deltas,
                                   const std::set<core::SubscriberId>& nft_failed,
                                   ReconcileReport& report) {
    std::vector<core::Prefix> blocked;
    for (const auto& d : deltas) {
        if (!nft_failed.contains(d.id)) {
            blocked.insert(blocked.end(), d.newly_blocked.begin(), d.newly_blocked.end());
        }
    }
    if (cfg.delete_conntrack_on_block && !blocked.empty()) {
        auto r = delete_conntrack_entries(blocked);
        report.conntrack_deleted += r.deleted;
        if (!r.error.empty()) {
            record(report, "deleting conntrack entries of blocked subscribers: " + r.error);
        }
    }
}

// The cache of what is installed, so that the next change is planned without
// reading the kernel back; a failure leaves it unknown.
void Enforcer::Impl::remember_installed(const std::vector<SubscriberDelta>& deltas,
                                        std::map<core::SubscriberId, SubscriberItems>& wants,
                                        const nlohmann::json& before,
                                        const std::set<core::SubscriberId>& failed,
                                        const std::set<core::SubscriberId>& nft_failed) {
    for (const auto& d : deltas) {
        if (d.id == 0) {
            continue;
        }
        if (nft_failed.contains(d.id) || failed.contains(d.id)) {
            cache_valid = false;  // re-read before the next change
            continue;
        }
        auto& want = wants[d.id];
        if (want.empty()) {
            installed.erase(d.id);
        } else {
            installed[d.id] = std::move(want);
        }
    }
    if (!before.empty() && nft_failed.empty()) {
        for (const auto& [plan, list] : allowed) {
            if (plans_with_chain.contains(plan)) {  // a refused plan is tried again next time
                allowed_installed[plan] = list;
            }
        }
    }
}

void Enforcer::Impl::execute(std::vector<SubscriberDelta>& deltas,
                             std::map<core::SubscriberId, SubscriberItems>& wants,
                             const nlohmann::json& before, ReconcileReport& report) {
    const auto failed = set_classes(deltas, report);
    const auto nft_failed = run_nft(deltas, wants, before, report);
    delete_classes(deltas, nft_failed, report);
    flush_blocked(deltas, nft_failed, report);
    remember_installed(deltas, wants, before, failed, nft_failed);
    report.subscribers_changed += deltas.size();
}

}  // namespace ctquota::enforce
