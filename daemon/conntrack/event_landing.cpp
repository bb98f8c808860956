#include "conntrack/event_landing.hpp"

#include <sys/socket.h>

#include <cstring>
#include <stdexcept>

namespace ctquota::conntrack {
namespace {

constexpr std::uint64_t kMagic = 0x31646e614c514354;  // "CTQLand1": this layout
constexpr std::size_t kPage = 4096;

constexpr std::size_t round_up(std::size_t n) {
    return (n + kPage - 1) & ~(kPage - 1);
}

}  // namespace

struct EventLanding::Header {
    std::uint64_t magic;
    std::uint64_t slots;
};

namespace {

constexpr std::size_t kMsgsAt = 64;
constexpr std::size_t kIovAt = kMsgsAt + EventLanding::kSlots * sizeof(mmsghdr);
constexpr std::size_t kSlotsAt = round_up(kIovAt + EventLanding::kSlots * sizeof(iovec));

}  // namespace

std::size_t EventLanding::bytes_needed() {
    return kSlotsAt + kSlots * kSlotBytes;
}

EventLanding::EventLanding(std::span<std::byte> area)
    : header_(reinterpret_cast<Header*>(area.data())),
      msgs_(reinterpret_cast<mmsghdr*>(area.data() + kMsgsAt)),
      iov_(reinterpret_cast<iovec*>(area.data() + kIovAt)),
      slots_(area.data() + kSlotsAt) {
    if (area.size() < bytes_needed()) {
        throw std::invalid_argument("event landing area too small");
    }
    if (header_->magic != kMagic || header_->slots != kSlots) {
        std::memset(area.data(), 0, kSlotsAt);
        header_->slots = kSlots;
        header_->magic = kMagic;
    }
}

std::size_t EventLanding::landed() const {
    std::size_t n = 0;
    while (n < kSlots && msgs_[n].msg_len != 0) {
        ++n;
    }
    return n;
}

int EventLanding::receive(int fd) {
    // The addresses are this process's: rewritten every time, never read back.
    for (std::size_t i = 0; i < kSlots; ++i) {
        iov_[i] = {slots_ + i * kSlotBytes, kSlotBytes};
        msgs_[i].msg_hdr = {};
        msgs_[i].msg_hdr.msg_iov = &iov_[i];
        msgs_[i].msg_hdr.msg_iovlen = 1;
        msgs_[i].msg_len = 0;
    }
    // The kernel stores each datagram's msg_len right after copying it.
    return recvmmsg(fd, msgs_, kSlots, MSG_DONTWAIT, nullptr);
}

void EventLanding::for_each(const std::function<void(const void*, std::size_t)>& fn) const {
    const std::size_t n = landed();
    for (std::size_t i = 0; i < n; ++i) {
        fn(slots_ + i * kSlotBytes, std::min<std::size_t>(msgs_[i].msg_len, kSlotBytes));
    }
}

void EventLanding::release() {
    for (std::size_t i = 0; i < kSlots && msgs_[i].msg_len != 0; ++i) {
        msgs_[i].msg_len = 0;
    }
}

}  // namespace ctquota::conntrack
