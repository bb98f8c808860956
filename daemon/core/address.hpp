#pragma once
// IP addresses and prefixes as plain values (IPv4 and IPv6 in one type).
// Owns parsing and formatting; never does I/O.

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ctquota::core {

enum class Family : std::uint8_t { None = 0, V4 = 4, V6 = 6 };

struct IpAddress {
    Family family = Family::None;
    // IPv4 uses bytes[0..3]; the rest stays zero so that equality and hashing are plain.
    std::array<std::uint8_t, 16> bytes{};

    static IpAddress v4(std::uint32_t host_order);
    static IpAddress v4_bytes(const void* network_order4);
    static IpAddress v6_bytes(const void* network_order16);
    static std::optional<IpAddress> parse(std::string_view text);

    [[nodiscard]] int bit_width() const { return family == Family::V4 ? 32 : 128; }
    [[nodiscard]] std::string to_string() const;
    auto operator<=>(const IpAddress&) const = default;
};

struct Prefix {
    IpAddress address;  // host bits are always zero
    int length = 0;

    // "100.64.0.5", "100.64.0.0/10", "2001:db8::/56"; a bare address means a host prefix.
    static std::optional<Prefix> parse(std::string_view text);
    static Prefix make(const IpAddress& address, int length);  // masks host bits
    [[nodiscard]] bool contains(const IpAddress& a) const;
    [[nodiscard]] std::string to_string() const;
    auto operator<=>(const Prefix&) const = default;
};

// The address with all bits past `length` cleared.
IpAddress mask_address(const IpAddress& a, int length);

}  // namespace ctquota::core
