// GET /api/v1/usage: bulk usage export in pages keyed on the subscriber id, as
// JSON or (Accept: text/csv) CSV with the same rows and columns.
//
// - cycle=current|YYYY-MM-DD: one row per subscriber for its own billing cycle
//   (its plan's; the calendar month in UTC without a plan): the cycle running
//   now, or the one running at the end of that date in the plan's time zone.
// - from=&to=&granularity=hour|day: one row per subscriber and UTC hour or day
//   with usage in the range, from usage_hourly.
//
// A cursor pins what its export reads: the instant cycle=current was first
// read at (so every page reads the same cycles, even across a cycle boundary),
// the date, or the range; a request naming something else is a 400.

#include "api/csv.hpp"
#include "api/cursor.hpp"
#include "api/policy_view.hpp"
#include "api/problem.hpp"
#include "api/routes.hpp"
#include "api/series.hpp"
#include "api/validation.hpp"
#include "core/calendar.hpp"
#include "store/subscriber_queries.hpp"

namespace ctquota::api {
namespace {

constexpr std::size_t kDefaultLimit = 1000;
constexpr std::size_t kMaxLimit = 10000;
constexpr const char* kPath = "/api/v1/usage";

using json = nlohmann::ordered_json;

json optional_time(const std::optional<core::TimePoint>& t) {
    return t ? json(core::iso8601_utc(*t)) : json();
}

json optional_text(const std::optional<std::string>& s) {
    return s ? json(*s) : json();
}

json usage_columns(json row, const core::Usage& u, const std::optional<core::TimePoint>& updated) {
    row["up_bytes"] = u.up.bytes;
    row["down_bytes"] = u.down.bytes;
    row["up_packets"] = u.up.packets;
    row["down_packets"] = u.down.packets;
    row["updated_at"] = optional_time(updated);
    return row;
}

// The columns of one row, in order; JSON items and CSV lines are both made
// from these, so the two cannot disagree.
json row_of(const store::ExportRow& r) {
    return usage_columns({{"subscriber_id", r.external_id},
                          {"plan", optional_text(r.plan)},
                          {"cycle_start", core::iso8601_utc(r.span.start)},
                          {"cycle_end", core::iso8601_utc(r.span.end)}},
                         r.usage, r.updated_at);
}

json row_of(const store::RangeRow& r, Granularity g) {
    return usage_columns({{"subscriber_id", r.external_id},
                          {"plan", optional_text(r.plan)},
                          {"start", core::iso8601_utc(r.start)},
                          {"end", core::iso8601_utc(next_bucket(g, r.start))}},
                         r.usage, r.updated_at);
}

Reply as_csv(const std::vector<std::string>& header, const json& rows) {
    std::string out;
    for (std::size_t i = 0; i < header.size(); ++i) {
        out += (i ? "," : "") + header[i];
    }
    out += "\r\n";
    for (const auto& row : rows) {
        bool first = true;
        for (const auto& [name, value] : row.items()) {
            out += (first ? "" : ",") + csv_cell(value);
            first = false;
        }
        out += "\r\n";
    }
    return Reply{200, "text/csv; charset=utf-8; header=present", std::move(out), {}};
}

bool wants_csv(const Request& r) {
    return r.header("accept").find("text/csv") != std::string::npos;
}

// The page as JSON (`meta` plus items and next_cursor) or CSV, with the Link
// and X-Next-Cursor headers when there is a next page.
Reply page_reply(const Request& r, json meta, const std::vector<std::string>& header, json items,
                 const std::optional<std::string>& next, const std::string& next_query) {
    Reply reply;
    if (wants_csv(r)) {
        reply = as_csv(header, items);
    } else {
        meta["items"] = std::move(items);
        meta["next_cursor"] = next ? json(*next) : json();
        reply = json_reply(200, meta);
    }
    if (next) {
        reply.headers.emplace_back("Link", std::string("<") + kPath + "?" + next_query +
                                               "&cursor=" + *next + ">; rel=\"next\"");
        reply.headers.emplace_back("X-Next-Cursor", *next);
    }
    return reply;
}

std::optional<Cursor> read_cursor(const Request& r, const char* kind) {
    const auto text = query_value(r.query, "cursor");
    if (!text) {
        return std::nullopt;
    }
    const auto cursor = decode_cursor(*text);
    if (!cursor || cursor->kind != kind) {
        throw bad_request(
            "cursor is not one this export handed out; pass next_cursor from the previous page "
            "unchanged (with the same cycle, or from, to and granularity), or leave cursor out "
            "to start from the beginning");
    }
    return cursor;
}

// -- cycle=current|YYYY-MM-DD ---------------------------------------------------

struct CycleRequest {
    std::string cycle = "current";  // as asked: "current" or a date
    bool current = true;
    core::TimePoint at{};  // current: the instant read at; otherwise the date
    std::string after;
    std::size_t limit = kDefaultLimit;
};

std::string pinned_text(const CycleRequest& req) {
    return req.current ? core::iso8601_utc(req.at) : format_date(req.at);
}

CycleRequest read_cycle_request(const Request& r, core::TimePoint now) {
    CycleRequest out;
    out.limit = parse_limit(r.query, kDefaultLimit, kMaxLimit);
    out.cycle = query_value(r.query, "cycle").value_or("current");
    out.current = out.cycle == "current";
    if (out.current) {
        out.at = std::chrono::floor<std::chrono::seconds>(now);
    } else {
        const auto date = parse_date(out.cycle);
        if (!date) {
            throw bad_request(
                "cycle must be 'current' or a date YYYY-MM-DD (per subscriber, the cycle "
                "running at the end of that day), got '" +
                out.cycle.substr(0, 32) + "'");
        }
        out.at = *date;
    }
    const auto cursor = read_cursor(r, "usage");
    if (!cursor) {
        return out;
    }
    const bool pinned_current = cursor->cycle.size() != 10;
    const auto pinned = *parse_timestamp(cursor->cycle);
    if (pinned_current != out.current || (!out.current && pinned != out.at)) {
        throw bad_request("cursor belongs to the export of cycle=" +
                          (pinned_current ? std::string("current") : cursor->cycle) +
                          ", not to cycle=" + out.cycle);
    }
    out.at = pinned;
    out.after = cursor->after;
    return out;
}

Reply export_cycles(Services& s, const Request& r) {
    const auto req = read_cycle_request(r, s.clock.now());
    const store::CycleOf cycle_of = [&req](core::TimePoint created_at,
                                           const std::optional<std::string>& plan,
                                           const std::optional<std::string>& definition) {
        return req.current ? current_cycle(created_at, plan, definition, req.at)
                           : cycle_on_date(created_at, plan, definition, req.at);
    };
    std::vector<store::ExportRow> rows;
    {
        auto lease = s.pool.acquire();
        rows =
            store::SubscriberQueries(*lease).cycle_usage_page(req.after, req.limit + 1, cycle_of);
    }
    std::optional<std::string> next;
    if (rows.size() > req.limit) {
        rows.resize(req.limit);
        next = encode_cursor({"usage", rows.back().external_id, pinned_text(req)});
    }
    json items = json::array();
    for (const auto& row : rows) {
        items.push_back(row_of(row));
    }
    return page_reply(
        r,
        {{"cycle", req.cycle}, {"as_of", req.current ? json(core::iso8601_utc(req.at)) : json()}},
        {"subscriber_id", "plan", "cycle_start", "cycle_end", "up_bytes", "down_bytes",
         "up_packets", "down_packets", "updated_at"},
        std::move(items), next, "cycle=" + req.cycle + "&limit=" + std::to_string(req.limit));
}

// -- from=&to=&granularity=hour|day ---------------------------------------------

struct RangeRequest {
    SeriesRange range;
    std::string after_id;
    core::TimePoint after_start{};
    std::size_t limit = kDefaultLimit;
};

std::string range_text(const SeriesRange& range) {
    return core::iso8601_utc(range.from) + "/" + core::iso8601_utc(range.to) + "/" +
           granularity_name(range.granularity);
}

RangeRequest read_range_request(const Request& r, core::TimePoint now) {
    if (query_value(r.query, "cycle")) {
        throw bad_request("cycle and from/to are two different exports; pass one of them");
    }
    if (!query_value(r.query, "from") || !query_value(r.query, "to")) {
        throw bad_request("a range export needs both from and to (ISO-8601 times with a zone)");
    }
    RangeRequest out;
    out.limit = parse_limit(r.query, kDefaultLimit, kMaxLimit);
    if (query_value(r.query, "granularity").value_or("hour") == "cycle") {
        throw bad_request(
            "granularity must be hour or day for a range export; per-subscriber cycles are "
            "exported with cycle=current or cycle=YYYY-MM-DD");
    }
    // The series' parser checks its own parameters only.
    Query range_query;
    for (const auto& [name, value] : r.query) {
        if (name == "from" || name == "to" || name == "granularity") {
            range_query.emplace(name, value);
        }
    }
    out.range = parse_series_query(range_query, now);
    const auto cursor = read_cursor(r, "usage-range");
    if (!cursor) {
        return out;
    }
    if (cursor->cycle != range_text(out.range)) {
        throw bad_request("cursor belongs to the range export " + cursor->cycle.substr(0, 80) +
                          ", not to " + range_text(out.range));
    }
    // after: "<bucket start> <subscriber id>".
    const auto space = cursor->after.find(' ');
    const auto start =
        space == std::string::npos ? std::nullopt : parse_timestamp(cursor->after.substr(0, space));
    if (!start || space + 1 >= cursor->after.size()) {
        throw bad_request("cursor is not one this export handed out");
    }
    out.after_start = *start;
    out.after_id = cursor->after.substr(space + 1);
    return out;
}

Reply export_range(Services& s, const Request& r) {
    const auto req = read_range_request(r, s.clock.now());
    const auto g = req.range.granularity;
    std::vector<store::RangeRow> rows;
    {
        auto lease = s.pool.acquire();
        rows = store::SubscriberQueries(*lease).range_usage_page(
            req.range.from, req.range.to,
            g == Granularity::Day ? store::SeriesUnit::Day : store::SeriesUnit::Hour, req.after_id,
            req.after_start, req.limit + 1);
    }
    std::optional<std::string> next;
    if (rows.size() > req.limit) {
        rows.resize(req.limit);
        const auto& last = rows.back();
        next = encode_cursor({"usage-range", core::iso8601_utc(last.start) + " " + last.external_id,
                              range_text(req.range)});
    }
    json items = json::array();
    for (const auto& row : rows) {
        items.push_back(row_of(row, g));
    }
    return page_reply(
        r,
        {{"granularity", granularity_name(g)},
         {"from", core::iso8601_utc(req.range.from)},
         {"to", core::iso8601_utc(req.range.to)}},
        {"subscriber_id", "plan", "start", "end", "up_bytes", "down_bytes", "up_packets",
         "down_packets", "updated_at"},
        std::move(items), next,
        "from=" + core::iso8601_utc(req.range.from) + "&to=" + core::iso8601_utc(req.range.to) +
            "&granularity=" + granularity_name(g) + "&limit=" + std::to_string(req.limit));
}

Reply export_usage(Services& s, const Request& r) {
    check_query(r.query, {"cycle", "from", "to", "granularity", "limit", "cursor"});
    const bool range = query_value(r.query, "from") || query_value(r.query, "to") ||
                       query_value(r.query, "granularity");
    return range ? export_range(s, r) : export_cycles(s, r);
}

}  // namespace

void add_usage_routes(Router& router, Services& services) {
    auto& s = services;
    router.add(
        {"GET", kPath, Access::Read, false, [&s](const Request& r) { return export_usage(s, r); }});
}

}  // namespace ctquota::api
