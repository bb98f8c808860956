#pragma once
// Page cursors: opaque to clients, base64url of a small JSON object naming the
// listing they belong to, the last key of the page before, and (for usage
// exports) the billing cycle, so every page of one export reads the same cycle.
// Pure.

#include <optional>
#include <string>
#include <string_view>

namespace ctquota::api {

struct Cursor {
    std::string kind;   // "subscribers", "usage", "events" or "topups"
    std::string after;  // the last external id (events, top-ups: row id) of the previous page
    std::string cycle;  // "YYYY-MM-DD" (usage only; empty otherwise)
    bool operator==(const Cursor&) const = default;
};

std::string encode_cursor(const Cursor& c);
// nullopt for anything encode_cursor did not make (or could not have made).
std::optional<Cursor> decode_cursor(std::string_view text);

}  // namespace ctquota::api
