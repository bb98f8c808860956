#pragma once
// api::ConnectionTable: which HTTP connections are open, from where, and what
// each is doing; decides whether a new one may come in. Pure bookkeeping (no
// sockets, no clock: callers pass the time), so the admission rules are
// unit-tested directly.
//
// Rules, in this order:
//  1. at most `per_address` connections from one client address: the next
//     one is refused (an address cannot take the server for itself);
//  2. at most `total` connections: the next one evicts a connection that is
//     waiting for a request (slowloris, a slow body, idle): first those that
//     never delivered one, oldest first, then idle keep-alive connections that
//     did, oldest first, and those only while no eviction is still closing
//     (a flood outrunning the closes must not reach them). Whoever sends
//     whole requests gets in, and a client that keeps its connection between
//     requests keeps it under a flood of new ones. With nothing to evict
//     (every connection has a request in the handlers or a response on the
//     wire) the newcomer is refused.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace ctquota::api {

using ConnectionId = std::uint64_t;

struct ConnectionLimits {
    std::size_t total = 512;
    std::size_t per_address = 32;
};

enum class Admission : std::uint8_t { Admitted, RefusedAddress, RefusedFull };

struct AdmitResult {
    Admission admission = Admission::Admitted;
    ConnectionId id = 0;                 // when admitted
    std::optional<ConnectionId> evicts;  // close this one to make room
};

class ConnectionTable {
  public:
    using TimePoint = std::chrono::steady_clock::time_point;

    explicit ConnectionTable(ConnectionLimits limits) : limits_(limits) {}

    // A new connection from `address`, waiting for its first request from `now`.
    AdmitResult admit(const std::string& address, TimePoint now);
    // The connection is waiting for a request from `now` (evictable) ...
    void waiting(ConnectionId id, TimePoint now);
    // ... or has one in hand (a request being served, a response being
    // written); `delivered`: a whole request (not a refusal of a broken one).
    void busy(ConnectionId id, bool delivered = true);
    // The connection is closed.
    void release(ConnectionId id);

    [[nodiscard]] std::size_t open() const;
    // The connections waiting for a request (to close when stopping).
    [[nodiscard]] std::vector<ConnectionId> waiting_ids() const;
    [[nodiscard]] std::size_t open_from(const std::string& address) const;
    [[nodiscard]] const ConnectionLimits& limits() const { return limits_; }

  private:
    struct Entry {
        std::string address;
        std::optional<TimePoint> waiting_since;  // empty: busy or already evicted
        bool served = false;                     // has delivered a request
        bool evicted = false;                    // chosen, not yet closed
    };
    using WaitOrder = std::multimap<TimePoint, ConnectionId>;
    WaitOrder& order_of(const Entry& e) { return e.served ? kept_waiting_ : new_waiting_; }
    // The longest-waiting connection, taken out of the waiting order.
    std::optional<ConnectionId> take_oldest_waiting();
    void stop_waiting(Entry& e, ConnectionId id);

    ConnectionLimits limits_;
    mutable std::mutex mu_;
    ConnectionId next_id_ = 1;
    std::unordered_map<ConnectionId, Entry> entries_;
    std::unordered_map<std::string, std::size_t> per_address_;
    std::size_t evictions_pending_ = 0;
    WaitOrder new_waiting_;   // evicted first
    WaitOrder kept_waiting_;  // then these
};

}  // namespace ctquota::api
