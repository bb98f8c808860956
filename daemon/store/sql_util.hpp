#pragma once
// Helpers shared by the store's files: time conversion and array parameters.
// Values travel as parameters only; nothing here builds SQL from input.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/clock.hpp"

namespace ctquota::store {

// timestamptz <-> microseconds since the epoch, exactly (no float rounding). In SQL:
// 'epoch'::timestamptz + $N::bigint * interval '1 microsecond'

inline std::int64_t to_micros(core::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

inline core::TimePoint from_micros(std::int64_t us) {
    return core::TimePoint{std::chrono::microseconds{us}};
}

// SQL expression giving a timestamptz column as bigint microseconds.
inline std::string micros_of(const std::string& column) {
    return "(extract(epoch from " + column + ") * 1000000)::bigint";
}

// A PostgreSQL array literal of integers, passed as one text parameter.
template <typename T>
std::string int_array(const std::vector<T>& values) {
    std::string out = "{";
    out.reserve(values.size() * 8 + 2);
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (i != 0) {
            out += ',';
        }
        out += std::to_string(values[i]);
    }
    out += '}';
    return out;
}

}  // namespace ctquota::store
