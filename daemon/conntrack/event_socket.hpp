#pragma once
// EventSocket: the ctnetlink DESTROY event group. Owns buffer sizing
// (SO_RCVBUFFORCE, checked against what the kernel granted) and reports
// overruns instead of hiding them, so the caller can count them and resync.
//
// With a `persist` step, read() lands a batch of datagrams in an area that
// outlives the process (EventLanding, mapped from a file by the caller),
// parses them and hands their events to persist (the journal) before the
// slots are reused, so at every moment an event is in the socket, landed or
// persisted. The socket itself may outlive the process (a service manager's
// fd store); see runtime/fd_store.hpp.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "conntrack/event_landing.hpp"
#include "core/flow.hpp"

struct mnl_socket;

namespace ctquota::conntrack {

// Held: persist refused an event, which stays in the socket (read again later).
enum class ReadStatus { Ok, Timeout, Overrun, Error, Held };

struct EventStats {
    std::uint64_t messages = 0;
    std::uint64_t unparsed = 0;  // messages that were not IPv4/IPv6 conntrack entries
};

class EventSocket {
  public:
    // Opens and subscribes a new socket, or (adopt_fd >= 0) takes over one
    // made so by an earlier run; throws std::runtime_error when it cannot
    // open or bind one, or `adopt_fd` is not such a socket (it is then
    // closed). The receive buffer becomes at least `buffer_bytes`.
    explicit EventSocket(std::uint64_t buffer_bytes, int adopt_fd = -1);
    // On: asks the kernel to keep an entry until its DESTROY reached us (the
    // NETLINK_BROADCAST_ERROR socket option), so an overrun delays events
    // instead of losing them; resent events can arrive twice and the ledger
    // drops those. Only while somebody reads: the kernel holds dying entries
    // for as long as the socket is full. Overruns are then no longer socket
    // errors (NETLINK_NO_ENOBUFS: an error would make a service manager
    // holding the socket close it) but counted drops, which read() reports.
    // Off: both options cleared (an adopted socket keeps those of the run
    // that set them).
    void set_reliable_delivery(bool on);
    ~EventSocket();
    EventSocket(const EventSocket&) = delete;
    EventSocket& operator=(const EventSocket&) = delete;

    // Where batches land when read() persists: an area of
    // EventLanding::bytes_needed() bytes that outlives the process (a shared
    // file mapping) and this socket. Datagrams a killed process landed and
    // did not persist are read first.
    void land_in(std::span<std::byte> area);

    // Datagrams (events) one read() takes at most: fewer means it emptied the socket.
    static constexpr std::size_t kMaxPerRead = 128;

    // Returns whether the events may be taken (false: they stay landed).
    using Persist = std::function<bool(std::span<core::FlowSample>)>;
    // Waits up to timeout_ms for events and appends what arrived to `out`.
    // With `persist`, land_in must have been called.
    // Overrun: the kernel could not deliver some events since the last call
    // (what was read is in `out` all the same).
    ReadStatus read(std::vector<core::FlowSample>& out, int timeout_ms,
                    const Persist& persist = {});
    // Asks for a bigger buffer (doubling up to `max`); returns the size granted.
    std::uint64_t grow(std::uint64_t max);
    [[nodiscard]] int fd() const;
    [[nodiscard]] bool adopted() const { return adopted_; }
    [[nodiscard]] std::uint64_t buffer_bytes() const { return granted_; }
    [[nodiscard]] const EventStats& stats() const { return stats_; }
    [[nodiscard]] int last_errno() const { return last_errno_; }

  private:
    std::uint64_t set_buffer(std::uint64_t bytes);
    void adopt(int fd);
    ReadStatus read_batch(std::vector<core::FlowSample>& out);
    ReadStatus read_landed(std::vector<core::FlowSample>& out, const Persist& persist);
    void parse(const void* data, std::size_t len, std::vector<core::FlowSample>& out);
    bool dropped_since_last_read();

    mnl_socket* nl_ = nullptr;
    bool adopted_ = false;
    bool reliable_ = false;
    std::uint64_t granted_ = 0;
    std::uint32_t drops_seen_ = 0;
    EventStats stats_;
    int last_errno_ = 0;
    std::vector<char> storage_;
    std::unique_ptr<EventLanding> landing_;
};

}  // namespace ctquota::conntrack
