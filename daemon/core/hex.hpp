#pragma once
// Hex of raw bytes (digests). Lower case: webhook receivers compare the
// signature as a string, and PostgreSQL's encode(..., 'hex') writes it so too.

#include <cstddef>
#include <string>

namespace ctquota::core {

inline std::string hex(const unsigned char* data, std::size_t n) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        out += kDigits[data[i] >> 4];
        out += kDigits[data[i] & 0xf];
    }
    return out;
}

}  // namespace ctquota::core
