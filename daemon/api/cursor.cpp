#include "api/cursor.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "api/base64.hpp"
#include "api/problem.hpp"
#include "api/series.hpp"
#include "api/validation.hpp"

namespace ctquota::api {
namespace {

constexpr int kVersion = 1;
constexpr std::size_t kMaxCursor = 2048;

// Events and top-ups page on their (positive, decimal) row id.
bool positive_integer(const std::string& text) {
    return !text.empty() && text.size() <= 18 && text[0] != '0' &&
           std::all_of(text.begin(), text.end(),
                       [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
}

bool valid_kind(const std::string& kind, const std::string& cycle, const std::string& after) {
    if (kind == "subscribers") {
        return cycle.empty();
    }
    if (kind == "events" || kind == "topups") {
        return cycle.empty() && positive_integer(after);
    }
    if (kind == "usage-range") {
        return !cycle.empty();  // the route checks it against its from, to and granularity
    }
    // A date (cycle=YYYY-MM-DD) or the instant cycle=current was read at.
    return kind == "usage" && parse_timestamp(cycle).has_value();
}

}  // namespace

std::string encode_cursor(const Cursor& c) {
    nlohmann::json j = {{"v", kVersion}, {"k", c.kind}, {"a", c.after}};
    if (!c.cycle.empty()) {
        j["c"] = c.cycle;
    }
    return base64url_encode(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

std::optional<Cursor> decode_cursor(std::string_view text) {
    if (text.empty() || text.size() > kMaxCursor) {
        return std::nullopt;
    }
    const auto raw = base64url_decode(text);
    if (!raw) {
        return std::nullopt;
    }
    const auto j = nlohmann::json::parse(*raw, nullptr, false);
    if (!j.is_object() || j.size() > 4 || !j.contains("v") || j["v"] != kVersion ||
        !j.contains("k") || !j["k"].is_string() || !j.contains("a") || !j["a"].is_string()) {
        return std::nullopt;
    }
    Cursor c{j["k"].get<std::string>(), j["a"].get<std::string>(), ""};
    if (j.contains("c")) {
        if (!j["c"].is_string()) {
            return std::nullopt;
        }
        c.cycle = j["c"].get<std::string>();
    }
    if (j.size() != (j.contains("c") ? 4u : 3u) || !valid_kind(c.kind, c.cycle, c.after) ||
        c.after.empty() || !is_clean_text(c.after)) {
        return std::nullopt;
    }
    return c;
}

std::string cursor_after(const Query& query, const char* kind, const char* start) {
    const auto text = query_value(query, "cursor");
    if (!text) {
        return "";
    }
    const auto cursor = decode_cursor(*text);
    if (!cursor || cursor->kind != kind) {
        throw bad_request(
            "cursor is not one this listing handed out; pass next_cursor from the previous page "
            "unchanged, or leave cursor out to start from " +
            std::string(start));
    }
    return cursor->after;
}

std::int64_t id_cursor(const Query& query, const char* kind) {
    const auto after = cursor_after(query, kind, "the newest");
    std::int64_t id = 0;
    std::from_chars(after.data(), after.data() + after.size(), id);
    return id;
}

}  // namespace ctquota::api
