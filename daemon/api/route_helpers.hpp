#pragma once
// Small pieces shared by the route files: path ids, body media types, URL
// encoding of ids in Location headers, keyset pages.

#include <cstddef>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/cursor.hpp"
#include "api/request.hpp"
#include "api/validation.hpp"
#include "store/subscriber_queries.hpp"

namespace ctquota::api {

// The {id} of a subscriber path, after refusing query parameters not allowed. An id
// that cannot exist is answered like one that does not (404).
const std::string& subscriber_path_id(const Request& r,
                                      std::initializer_list<std::string_view> allowed_query = {});

// The active subscriber an (already valid) path id names; 404 otherwise.
store::SubscriberQueries::Ref subscriber_ref(store::Database& db, const std::string& id);

// Bodies are read as JSON whatever they are labelled, except as something
// JSON cannot be (415). curl -d labels JSON as a form; refusing that helps no one.
void require_json(const Request& r);

// RFC 3986 unreserved characters stay, every other byte becomes %XX.
std::string percent_encode(const std::string& s);

inline constexpr std::size_t kDefaultPageLimit = 100;
inline constexpr std::size_t kMaxPageLimit = 1000;

// The keyset pages of the subscriber, event and top-up listings. limit, then
// cursor, are checked before anything is read, so a request wrong in both gets
// the same 400 from each. One row more than the limit is fetched: it is how a
// page knows another follows, without counting. `read_after(query, kind)`
// takes the key from the cursor, `fetch(after, n)` reads up to n rows past it,
// `key_of(row)` is the key the next cursor carries.
template <typename ReadAfter, typename Fetch, typename KeyOf, typename ItemOf>
Reply keyset_page(const Query& query, const char* kind, ReadAfter read_after, Fetch&& fetch,
                  KeyOf key_of, ItemOf&& item_of) {
    const auto limit = parse_limit(query, kDefaultPageLimit, kMaxPageLimit);
    auto rows = fetch(read_after(query, kind), limit + 1);
    nlohmann::ordered_json next;
    if (rows.size() > limit) {
        rows.resize(limit);
        next = encode_cursor({kind, key_of(rows.back()), ""});
    }
    auto items = nlohmann::ordered_json::array();
    for (const auto& row : rows) {
        items.push_back(item_of(row));
    }
    return json_reply(200, {{"items", std::move(items)}, {"next_cursor", next}});
}

// Events and top-ups: newest first, keyed on the row id.
template <typename Fetch, typename ItemOf>
Reply id_page(const Query& query, const char* kind, Fetch&& fetch, ItemOf&& item_of) {
    return keyset_page(
        query, kind, id_cursor, fetch, [](const auto& row) { return std::to_string(row.id); },
        item_of);
}

}  // namespace ctquota::api
