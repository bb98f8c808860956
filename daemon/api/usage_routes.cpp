// GET /api/v1/usage: every subscriber's totals for one billing cycle, in pages
// keyed on the subscriber id, as JSON or (Accept: text/csv) CSV.

#include "api/cursor.hpp"
#include "api/problem.hpp"
#include "api/routes.hpp"
#include "api/validation.hpp"
#include "core/calendar.hpp"
#include "store/subscriber_queries.hpp"

namespace ctquota::api {
namespace {

constexpr std::size_t kDefaultLimit = 1000;
constexpr std::size_t kMaxLimit = 10000;
constexpr const char* kPath = "/api/v1/usage";

using json = nlohmann::ordered_json;

struct ExportRequest {
    core::TimePoint cycle;
    std::string after;
    std::size_t limit = kDefaultLimit;
};

// A cursor pins the cycle it was made for, so an export started in one month
// keeps reading that month after midnight on the 1st. An explicit date naming
// another cycle is a mistake worth reporting.
ExportRequest read_request(const Request& r, core::TimePoint now) {
    check_query(r.query, {"cycle", "limit", "cursor"});
    ExportRequest out;
    out.limit = parse_limit(r.query, kDefaultLimit, kMaxLimit);
    const auto cycle_text = query_value(r.query, "cycle").value_or("current");
    out.cycle = parse_cycle(cycle_text, now);
    const auto cursor_text = query_value(r.query, "cursor");
    if (!cursor_text) {
        return out;
    }
    const auto cursor = decode_cursor(*cursor_text);
    if (!cursor || cursor->kind != "usage") {
        throw bad_request(
            "cursor is not one this export handed out; pass next_cursor from the previous page "
            "unchanged, or leave cursor out to start from the beginning");
    }
    const auto pinned = core::month_start_utc(*parse_date(cursor->cycle));
    if (cycle_text != "current" && pinned != out.cycle) {
        throw bad_request("cursor belongs to the cycle starting " + cursor->cycle +
                          ", not the one starting " + format_date(out.cycle));
    }
    out.cycle = pinned;
    out.after = cursor->after;
    return out;
}

std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\r\n") == std::string::npos) {
        return s;
    }
    std::string out = "\"";
    for (const char c : s) {
        out += c == '"' ? std::string("\"\"") : std::string(1, c);
    }
    return out + "\"";
}

std::string updated_text(const store::CycleUsage& row) {
    return row.updated_at ? core::iso8601_utc(*row.updated_at) : "";
}

Reply as_csv(const std::vector<store::CycleUsage>& rows, core::TimePoint cycle) {
    const auto start = core::iso8601_utc(cycle);
    const auto end = core::iso8601_utc(core::next_month_start_utc(cycle));
    std::string out =
        "subscriber_id,cycle_start,cycle_end,up_bytes,down_bytes,up_packets,down_packets,"
        "updated_at\r\n";
    const auto fixed = "," + start + "," + end + ",";
    for (const auto& row : rows) {
        const auto& u = row.usage;
        out += csv_field(row.external_id);
        out += fixed;
        for (const auto n : {u.up.bytes, u.down.bytes, u.up.packets, u.down.packets}) {
            out += std::to_string(n);
            out += ',';
        }
        out += updated_text(row);
        out += "\r\n";
    }
    return Reply{200, "text/csv; charset=utf-8; header=present", std::move(out), {}};
}

Reply as_json(const std::vector<store::CycleUsage>& rows, core::TimePoint cycle, const json& next) {
    json items = json::array();
    for (const auto& row : rows) {
        const auto& u = row.usage;
        items.push_back({{"subscriber_id", row.external_id},
                         {"up_bytes", u.up.bytes},
                         {"down_bytes", u.down.bytes},
                         {"up_packets", u.up.packets},
                         {"down_packets", u.down.packets},
                         {"updated_at", row.updated_at ? json(updated_text(row)) : json()}});
    }
    return json_reply(200, {{"cycle_start", core::iso8601_utc(cycle)},
                            {"cycle_end", core::iso8601_utc(core::next_month_start_utc(cycle))},
                            {"items", std::move(items)},
                            {"next_cursor", next}});
}

bool wants_csv(const Request& r) {
    return r.header("accept").find("text/csv") != std::string::npos;
}

Reply export_usage(Services& s, const Request& r) {
    const auto req = read_request(r, s.clock.now());
    const auto end = core::next_month_start_utc(req.cycle);
    std::vector<store::CycleUsage> rows;
    {
        auto lease = s.pool.acquire();
        rows =
            store::SubscriberQueries(*lease).usage_page(req.cycle, end, req.after, req.limit + 1);
    }
    json next;
    if (rows.size() > req.limit) {
        rows.resize(req.limit);
        next = encode_cursor({"usage", rows.back().external_id, format_date(req.cycle)});
    }
    Reply reply = wants_csv(r) ? as_csv(rows, req.cycle) : as_json(rows, req.cycle, next);
    if (next.is_string()) {
        const auto cursor = next.get<std::string>();
        reply.headers.emplace_back(
            "Link", std::string("<") + kPath + "?cycle=" + format_date(req.cycle) + "&limit=" +
                        std::to_string(req.limit) + "&cursor=" + cursor + ">; rel=\"next\"");
        reply.headers.emplace_back("X-Next-Cursor", cursor);
    }
    return reply;
}

}  // namespace

void add_usage_routes(Router& router, Services& services) {
    auto& s = services;
    router.add(
        {"GET", kPath, Access::Read, false, [&s](const Request& r) { return export_usage(s, r); }});
}

}  // namespace ctquota::api
