#pragma once
// Page cursors: opaque to clients, base64url of a small JSON object naming the
// listing they belong to, the last key of the page before, and (for usage
// exports) the billing cycle, so every page of one export reads the same cycle.
// Pure.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/validation.hpp"

namespace ctquota::api {

struct Cursor {
    std::string kind;   // "subscribers", "usage", "usage-range", "events" or "topups"
    std::string after;  // the last external id (events, top-ups: row id) of the previous page
    // usage: "YYYY-MM-DD" (cycle=date) or the ISO-8601 instant cycle=current
    // read; usage-range: "from/to/granularity"; empty otherwise
    std::string cycle;
    bool operator==(const Cursor&) const = default;
};

std::string encode_cursor(const Cursor& c);
// nullopt for anything encode_cursor did not make (or could not have made).
std::optional<Cursor> decode_cursor(std::string_view text);

// The key after which a page of `kind` continues, from the "cursor" query
// parameter: empty without one; 400 for a cursor another listing made, telling
// the client that leaving it out starts from `start` ("the beginning").
std::string cursor_after(const Query& query, const char* kind, const char* start);
// The row id after which a page of `kind` ("events", "topups") continues: 0
// without a cursor. These listings run newest first.
std::int64_t id_cursor(const Query& query, const char* kind);

}  // namespace ctquota::api
