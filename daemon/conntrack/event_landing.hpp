#pragma once
// EventLanding: where a batch of event datagrams lands when each event must
// outlive the process from the moment it leaves the socket until it is
// persisted. The caller maps the area from a file (MAP_SHARED), so what one
// recvmmsg copied into it is in the page cache once the call returns; the
// kernel writes each datagram's length beside it, in the area too, which
// marks the slot landed. Slots are released (lengths zeroed) only once their
// events are persisted. A process that finds landed slots in an area a
// killed one left reads those first: an event is in the socket, landed or
// persisted at every moment (for an instant in two of them).
//
// One recvmmsg for up to kSlots events, instead of a peek and a consume for
// each. The area's layout is fixed by kMagic: an area of another layout is
// taken as empty (so is a new, zeroed one).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

struct mmsghdr;
struct iovec;

namespace ctquota::conntrack {

class EventLanding {
  public:
    static constexpr std::size_t kSlots = 128;
    static constexpr std::size_t kSlotBytes = 8192;  // one event is well under 1 KB

    // The size of the area to map.
    static std::size_t bytes_needed();

    // `area` holds at least bytes_needed() bytes, page-aligned; it outlives
    // this object. Slots a previous process landed and did not release stay.
    explicit EventLanding(std::span<std::byte> area);

    // Datagrams landed and not released yet.
    [[nodiscard]] std::size_t landed() const;
    // With nothing landed: receives what the socket holds, up to kSlots
    // datagrams, without waiting. Returns how many, or -1 with errno set.
    int receive(int fd);
    // Calls fn with each landed datagram, in the order received.
    void for_each(const std::function<void(const void*, std::size_t)>& fn) const;
    // Their events are persisted: the slots may be reused.
    void release();

  private:
    struct Header;
    Header* header_;
    mmsghdr* msgs_;
    iovec* iov_;
    std::byte* slots_;
};

}  // namespace ctquota::conntrack
