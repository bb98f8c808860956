#include "core/address.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace ctquota::core {

IpAddress IpAddress::v4(std::uint32_t host_order) {
    IpAddress a;
    a.family = Family::V4;
    a.bytes[0] = static_cast<std::uint8_t>(host_order >> 24);
    a.bytes[1] = static_cast<std::uint8_t>(host_order >> 16);
    a.bytes[2] = static_cast<std::uint8_t>(host_order >> 8);
    a.bytes[3] = static_cast<std::uint8_t>(host_order);
    return a;
}

IpAddress IpAddress::v4_bytes(const void* network_order4) {
    IpAddress a;
    a.family = Family::V4;
    std::memcpy(a.bytes.data(), network_order4, 4);
    return a;
}

IpAddress IpAddress::v6_bytes(const void* network_order16) {
    IpAddress a;
    a.family = Family::V6;
    std::memcpy(a.bytes.data(), network_order16, 16);
    return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
    // inet_pton is pure (no I/O); it needs a NUL-terminated copy.
    if (text.empty() || text.size() > 45) {
        return std::nullopt;
    }
    char buf[64];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    IpAddress a;
    if (text.find(':') == std::string_view::npos) {
        a.family = Family::V4;
        if (inet_pton(AF_INET, buf, a.bytes.data()) != 1) {
            return std::nullopt;
        }
    } else {
        a.family = Family::V6;
        if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) {
            return std::nullopt;
        }
    }
    return a;
}

std::string IpAddress::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (family == Family::V4) {
        inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
    } else if (family == Family::V6) {
        inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
    } else {
        return "-";
    }
    return buf;
}

IpAddress mask_address(const IpAddress& a, int length) {
    IpAddress m = a;
    const int width = a.bit_width();
    for (int bit = length; bit < width; ++bit) {
        m.bytes[static_cast<std::size_t>(bit / 8)] &=
            static_cast<std::uint8_t>(~(0x80u >> static_cast<unsigned>(bit % 8)));
    }
    return m;
}

Prefix Prefix::make(const IpAddress& address, int length) {
    return Prefix{mask_address(address, length), length};
}

std::optional<Prefix> Prefix::parse(std::string_view text) {
    const auto slash = text.find('/');
    auto address = IpAddress::parse(text.substr(0, slash));
    if (!address) {
        return std::nullopt;
    }
    int length = address->bit_width();
    if (slash != std::string_view::npos) {
        const auto digits = text.substr(slash + 1);
        const auto* end = digits.data() + digits.size();
        auto [ptr, ec] = std::from_chars(digits.data(), end, length);
        if (digits.empty() || ec != std::errc{} || ptr != end || length < 0 ||
            length > address->bit_width()) {
            return std::nullopt;
        }
    }
    return make(*address, length);
}

bool Prefix::contains(const IpAddress& a) const {
    return a.family == address.family && mask_address(a, length) == address;
}

std::string Prefix::to_string() const {
    return address.to_string() + "/" + std::to_string(length);
}

}  // namespace ctquota::core
