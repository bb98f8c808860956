// GET /api/v1/nat-lookup?address=&port=&at=: which subscriber and which
// connection held a public address and port at a time (carrier-grade NAT
// traceability, RFC 6888 / RFC 6302), from the flow log ([flowlog]). Every
// connection whose records span `at` comes back: the same public address and
// port may serve several connections at once (to different far ends), which
// `remote_address`/`remote_port` (and `protocol`) tell apart. Nothing found
// is an empty list, not an error.

#include <cstdio>

#include "api/route_helpers.hpp"
#include "api/routes.hpp"
#include "api/series.hpp"
#include "store/flow_log_store.hpp"

namespace ctquota::api {
namespace {

using json = nlohmann::ordered_json;

constexpr std::size_t kDefaultLimit = 100;
constexpr std::size_t kMaxLimit = 1000;

// "2026-11-26T08:00:00.123Z": flow times have milliseconds.
std::string iso_ms(core::TimePoint t) {
    const auto ms = std::chrono::floor<std::chrono::milliseconds>(t);
    const auto day = std::chrono::floor<std::chrono::days>(ms);
    const std::chrono::year_month_day ymd{day};
    const std::chrono::hh_mm_ss hms{ms - day};
    char buf[40];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                  static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
                  static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()),
                  static_cast<int>(hms.subseconds().count()));
    return buf;
}

std::optional<std::uint16_t> port_param(const Query& q, const std::string& name,
                                        std::vector<FieldError>& errors) {
    const auto text = query_value(q, name);
    if (!text) {
        return std::nullopt;
    }
    if (text->empty() || text->size() > 5 ||
        text->find_first_not_of("0123456789") != std::string::npos || std::stoi(*text) > 65535) {
        errors.push_back({name, "must be a port number in 0..65535"});
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(std::stoi(*text));
}

std::optional<std::string> address_param(const Query& q, const std::string& name,
                                         std::vector<FieldError>& errors) {
    const auto text = query_value(q, name);
    if (!text) {
        return std::nullopt;
    }
    const auto a = core::IpAddress::parse(*text);
    if (!a) {
        errors.push_back({name, "must be an IPv4 or IPv6 address"});
        return std::nullopt;
    }
    return a->to_string();
}

std::optional<std::uint8_t> protocol_param(const Query& q, std::vector<FieldError>& errors) {
    const auto text = query_value(q, "protocol");
    if (!text) {
        return std::nullopt;
    }
    if (*text == "tcp") {
        return 6;
    }
    if (*text == "udp") {
        return 17;
    }
    if (!text->empty() && text->size() <= 3 &&
        text->find_first_not_of("0123456789") == std::string::npos && std::stoi(*text) <= 255) {
        return static_cast<std::uint8_t>(std::stoi(*text));
    }
    errors.push_back({"protocol", "must be tcp, udp or a protocol number in 0..255"});
    return std::nullopt;
}

store::NatLookup parse_lookup(const Query& q) {
    check_query(q, {"address", "port", "at", "protocol", "remote_address", "remote_port", "limit"});
    std::vector<FieldError> errors;
    store::NatLookup l;
    const auto address = address_param(q, "address", errors);
    const auto port = port_param(q, "port", errors);
    for (const char* required : {"address", "port", "at"}) {
        if (!query_value(q, required)) {
            errors.push_back({required, "is required"});
        }
    }
    if (const auto at = query_value(q, "at")) {
        const auto t = parse_timestamp(*at);
        if (!t) {
            errors.push_back({"at",
                              "must be an ISO-8601 time with a zone, like "
                              "2026-11-26T08:00:00Z or 2026-11-26T09:00:00.250+01:00"});
        } else {
            l.at = *t;
        }
    }
    l.l4proto = protocol_param(q, errors);
    l.remote_address = address_param(q, "remote_address", errors);
    l.remote_port = port_param(q, "remote_port", errors);
    if (!errors.empty()) {
        throw invalid_query(std::move(errors));
    }
    l.address = *address;
    l.port = *port;
    return l;
}

json endpoint(const store::Endpoint& src, const store::Endpoint& dst) {
    return {
        {"src", src.address}, {"src_port", src.port}, {"dst", dst.address}, {"dst_port", dst.port}};
}

json holder_json(const store::NatHolder& h) {
    return {{"subscriber_id", h.subscriber ? json(*h.subscriber) : json()},
            {"gateway_id", h.gateway_id},
            {"protocol", h.l4proto},
            {"start", iso_ms(h.start)},
            {"start_is_first_seen", h.start_first_seen},
            {"end", h.ended ? json(iso_ms(h.last_seen)) : json()},
            {"last_seen", iso_ms(h.last_seen)},
            {"original", endpoint(h.original_src, h.original_dst)},
            {"reply", endpoint(h.reply_src, h.reply_dst)},
            {"orig_bytes", h.orig.bytes},
            {"orig_packets", h.orig.packets},
            {"reply_bytes", h.reply.bytes},
            {"reply_packets", h.reply.packets},
            {"conntrack_id", h.conntrack_id}};
}

Reply lookup(Services& s, const Request& r) {
    const auto q = parse_lookup(r.query);
    const auto limit = parse_limit(r.query, kDefaultLimit, kMaxLimit);
    auto lease = s.pool.acquire();
    const auto found = store::FlowLogQueries(*lease).nat_holders(q, limit);
    auto items = json::array();
    for (const auto& h : found) {
        items.push_back(holder_json(h));
    }
    return json_reply(200, {{"address", q.address},
                            {"port", q.port},
                            {"at", iso_ms(q.at)},
                            {"items", std::move(items)}});
}

}  // namespace

void add_nat_lookup_routes(Router& router, Services& services) {
    auto& s = services;
    router.add({"GET", "/api/v1/nat-lookup", Access::Read, false,
                [&s](const Request& r) { return lookup(s, r); }});
}

}  // namespace ctquota::api
