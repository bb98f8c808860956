// /api/v1/subscribers: create, read (with the current cycle's usage), list, remove.

#include "api/cursor.hpp"
#include "api/problem.hpp"
#include "api/routes.hpp"
#include "api/validation.hpp"
#include "core/calendar.hpp"
#include "store/subscriber_queries.hpp"
#include "store/subscriber_store.hpp"

namespace ctquota::api {
namespace {

constexpr std::size_t kDefaultLimit = 100;
constexpr std::size_t kMaxLimit = 1000;
constexpr const char* kCollection = "/api/v1/subscribers";

using json = nlohmann::ordered_json;

std::string percent_encode(const std::string& s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            out += '%';
            out += kHex[u >> 4];
            out += kHex[u & 0xf];
        }
    }
    return out;
}

json subscriber_json(const store::SubscriberView& s) {
    return {{"id", s.external_id},
            {"addresses", s.addresses},
            {"created_at", core::iso8601_utc(s.created_at)}};
}

json detail_json(const store::SubscriberDetail& d, core::TimePoint cycle_start) {
    json out = subscriber_json(d.subscriber);
    const auto& u = d.cycle.usage;
    out["cycle_start"] = core::iso8601_utc(cycle_start);
    out["cycle_end"] = core::iso8601_utc(core::next_month_start_utc(cycle_start));
    out["up_bytes"] = u.up.bytes;
    out["down_bytes"] = u.down.bytes;
    out["up_packets"] = u.up.packets;
    out["down_packets"] = u.down.packets;
    out["updated_at"] = d.cycle.updated_at ? json(core::iso8601_utc(*d.cycle.updated_at)) : json();
    out["state"] = {{"state", "normal"}};  // until plans and enforcement exist
    return out;
}

// A path id that cannot exist is answered like one that does not.
const std::string& path_id(const Request& r) {
    check_query(r.query, {});
    const auto& id = r.param("id");
    if (subscriber_id_problem(id)) {
        throw not_found("no subscriber with this id (ids are 1-200 bytes of UTF-8 text)");
    }
    return id;
}

json find_or_404(Services& s, const std::string& id, core::TimePoint now) {
    const auto cycle = core::month_start_utc(now);
    auto lease = s.pool.acquire();
    const auto found = store::SubscriberQueries(*lease).find(id, now, cycle);
    if (!found) {
        throw not_found("no subscriber '" + id + "'");
    }
    return detail_json(*found, cycle);
}

// Bodies are read as JSON whatever they are labelled, except as something
// JSON cannot be. curl -d labels JSON as a form; refusing that helps no one.
void require_json(const Request& r) {
    const auto type = r.header("content-type");
    auto media = type.substr(0, type.find(';'));
    for (auto& c : media) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    media.erase(media.find_last_not_of(' ') + 1);
    const bool ok = type.empty() || media == "application/json" || media.ends_with("+json") ||
                    media == "application/x-www-form-urlencoded" || media == "text/plain";
    if (!ok) {
        throw unsupported_media_type(type.substr(0, 100));
    }
}

Reply create(Services& s, const Request& r) {
    check_query(r.query, {});
    require_json(r);
    const auto input = parse_new_subscriber(parse_json_object(r.body));
    const auto now = s.clock.now();
    {
        auto lease = s.pool.acquire();
        try {
            store::SubscriberStore(*lease).add(input.id, input.addresses, now);
        } catch (const store::ConflictError& e) {
            throw conflict(std::string(e.what()) +
                           "; remove the address from the other subscriber first, or use another "
                           "id");
        }
    }
    Reply reply = json_reply(201, find_or_404(s, input.id, now));
    reply.headers.emplace_back("Location",
                               std::string(kCollection) + "/" + percent_encode(input.id));
    return reply;
}

Reply remove(Services& s, const Request& r) {
    const auto& id = path_id(r);
    auto lease = s.pool.acquire();
    if (!store::SubscriberStore(*lease).remove(id, s.clock.now())) {
        throw not_found("no subscriber '" + id + "' (or it was removed already)");
    }
    return no_content();
}

std::string cursor_after(const Query& query) {
    const auto text = query_value(query, "cursor");
    if (!text) {
        return "";
    }
    const auto cursor = decode_cursor(*text);
    if (!cursor || cursor->kind != "subscribers") {
        throw bad_request(
            "cursor is not one this listing handed out; pass next_cursor from the previous page "
            "unchanged, or leave cursor out to start from the beginning");
    }
    return cursor->after;
}

Reply list(Services& s, const Request& r) {
    check_query(r.query, {"q", "limit", "cursor"});
    const auto limit = parse_limit(r.query, kDefaultLimit, kMaxLimit);
    const auto after = cursor_after(r.query);
    const auto q = query_value(r.query, "q").value_or("");
    auto lease = s.pool.acquire();
    auto rows = store::SubscriberQueries(*lease).page(q, after, limit + 1, s.clock.now());
    json next;
    if (rows.size() > limit) {
        rows.resize(limit);
        next = encode_cursor({"subscribers", rows.back().external_id, ""});
    }
    json items = json::array();
    for (const auto& row : rows) {
        items.push_back(subscriber_json(row));
    }
    return json_reply(200, {{"items", std::move(items)}, {"next_cursor", next}});
}

}  // namespace

void add_subscriber_routes(Router& router, Services& services) {
    auto& s = services;
    const std::string item = std::string(kCollection) + "/{id}";
    router.add(
        {"GET", kCollection, Access::Read, false, [&s](const Request& r) { return list(s, r); }});
    router.add({"POST", kCollection, Access::Write, false,
                [&s](const Request& r) { return create(s, r); }});
    router.add({"GET", item, Access::Read, false, [&s](const Request& r) {
                    return json_reply(200, find_or_404(s, path_id(r), s.clock.now()));
                }});
    router.add(
        {"DELETE", item, Access::Write, false, [&s](const Request& r) { return remove(s, r); }});
}

}  // namespace ctquota::api
