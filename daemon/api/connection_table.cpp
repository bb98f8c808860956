#include "api/connection_table.hpp"

namespace ctquota::api {

AdmitResult ConnectionTable::admit(const std::string& address, TimePoint now) {
    std::lock_guard lock(mu_);
    AdmitResult r;
    const auto from = per_address_.find(address);
    if (from != per_address_.end() && from->second >= limits_.per_address) {
        r.admission = Admission::RefusedAddress;
        return r;
    }
    if (entries_.size() >= limits_.total) {
        r.evicts = take_oldest_waiting();
        if (!r.evicts) {
            r.admission = Admission::RefusedFull;
            return r;
        }
    }
    r.id = next_id_++;
    entries_.emplace(r.id, Entry{address, now, false, false});
    new_waiting_.emplace(now, r.id);
    ++per_address_[address];
    return r;
}

void ConnectionTable::stop_waiting(Entry& e, ConnectionId id) {
    if (!e.waiting_since) {
        return;
    }
    auto& order = order_of(e);
    auto [it, end] = order.equal_range(*e.waiting_since);
    for (; it != end; ++it) {
        if (it->second == id) {
            order.erase(it);
            break;
        }
    }
    e.waiting_since.reset();
}

void ConnectionTable::waiting(ConnectionId id, TimePoint now) {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(id);
    if (it == entries_.end() || it->second.evicted) {
        return;
    }
    stop_waiting(it->second, id);
    it->second.waiting_since = now;
    order_of(it->second).emplace(now, id);
}

void ConnectionTable::busy(ConnectionId id, bool delivered) {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(id);
    if (it != entries_.end()) {
        stop_waiting(it->second, id);
        it->second.served = it->second.served || delivered;
    }
}

void ConnectionTable::release(ConnectionId id) {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(id);
    if (it == entries_.end()) {
        return;
    }
    stop_waiting(it->second, id);
    if (it->second.evicted) {
        --evictions_pending_;
    }
    const auto from = per_address_.find(it->second.address);
    if (from != per_address_.end() && --from->second == 0) {
        per_address_.erase(from);
    }
    entries_.erase(it);
}

std::optional<ConnectionId> ConnectionTable::take_oldest_waiting() {
    auto* order = &new_waiting_;
    if (order->empty()) {
        if (evictions_pending_ > 0) {
            return std::nullopt;  // room is coming; the kept connections stay
        }
        order = &kept_waiting_;
    }
    if (order->empty()) {
        return std::nullopt;
    }
    const auto oldest = order->begin()->second;
    order->erase(order->begin());
    // Still counted until its socket is closed and released, never chosen again.
    auto& e = entries_.at(oldest);
    e.waiting_since.reset();
    e.evicted = true;
    ++evictions_pending_;
    return oldest;
}

std::size_t ConnectionTable::open() const {
    std::lock_guard lock(mu_);
    return entries_.size();
}

std::vector<ConnectionId> ConnectionTable::waiting_ids() const {
    std::lock_guard lock(mu_);
    std::vector<ConnectionId> ids;
    for (const auto* order : {&new_waiting_, &kept_waiting_}) {
        for (const auto& [since, id] : *order) {
            ids.push_back(id);
        }
    }
    return ids;
}

std::size_t ConnectionTable::open_from(const std::string& address) const {
    std::lock_guard lock(mu_);
    const auto it = per_address_.find(address);
    return it == per_address_.end() ? 0 : it->second;
}

}  // namespace ctquota::api
