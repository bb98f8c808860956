#pragma once
// EventSocket: the ctnetlink DESTROY event group. Owns buffer sizing
// (SO_RCVBUFFORCE, checked against what the kernel granted) and reports
// ENOBUFS instead of hiding it, so the caller can count it and resync.

#include <cstdint>
#include <vector>

#include "core/flow.hpp"

struct mnl_socket;

namespace ctquota::conntrack {

enum class ReadStatus { Ok, Timeout, Overrun, Error };

struct EventStats {
    std::uint64_t messages = 0;
    std::uint64_t unparsed = 0;  // messages that were not IPv4/IPv6 conntrack entries
};

class EventSocket {
  public:
    // Throws std::runtime_error when the socket cannot be opened or bound.
    explicit EventSocket(std::uint64_t buffer_bytes);
    // Asks the kernel to keep an entry until its DESTROY reached us (the
    // NETLINK_BROADCAST_ERROR socket option), so an overrun delays events
    // instead of losing them; resent events can arrive twice and the ledger
    // drops those. Only once somebody reads: the kernel holds dying entries
    // for as long as the socket is full.
    void enable_reliable_delivery();
    ~EventSocket();
    EventSocket(const EventSocket&) = delete;
    EventSocket& operator=(const EventSocket&) = delete;

    // Waits up to timeout_ms for events and appends what arrived to `out`.
    ReadStatus read(std::vector<core::FlowSample>& out, int timeout_ms);
    // Asks for a bigger buffer (doubling up to `max`); returns the size granted.
    std::uint64_t grow(std::uint64_t max);
    [[nodiscard]] std::uint64_t buffer_bytes() const { return granted_; }
    [[nodiscard]] const EventStats& stats() const { return stats_; }
    [[nodiscard]] int last_errno() const { return last_errno_; }

  private:
    std::uint64_t set_buffer(std::uint64_t bytes);

    mnl_socket* nl_ = nullptr;
    std::uint64_t granted_ = 0;
    EventStats stats_;
    int last_errno_ = 0;
    std::vector<char> storage_;
};

}  // namespace ctquota::conntrack
