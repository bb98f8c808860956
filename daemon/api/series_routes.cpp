// GET /api/v1/subscribers/{id}/usage: one subscriber's usage as a time series
// of hours, days or billing cycles, from usage_hourly summed over gateways.
// Every bucket of the range is a point; buckets without traffic are zeros.

#include "api/problem.hpp"
#include "api/route_helpers.hpp"
#include "api/routes.hpp"
#include "api/series.hpp"
#include "core/calendar.hpp"
#include "store/subscriber_queries.hpp"

namespace ctquota::api {
namespace {

using json = nlohmann::ordered_json;

store::SeriesUnit unit_of(Granularity g) {
    switch (g) {
        case Granularity::Hour:
            return store::SeriesUnit::Hour;
        case Granularity::Day:
            return store::SeriesUnit::Day;
        case Granularity::Cycle:
            return store::SeriesUnit::Month;
    }
    return store::SeriesUnit::Hour;
}

json point_json(core::TimePoint start, const core::Usage& u) {
    return {{"start", core::iso8601_utc(start)},
            {"up_bytes", u.up.bytes},
            {"down_bytes", u.down.bytes},
            {"up_packets", u.up.packets},
            {"down_packets", u.down.packets}};
}

// The stored (sparse) buckets, with zeros for those without usage.
json fill_points(const SeriesRange& range, const std::vector<store::SeriesPoint>& stored) {
    json points = json::array();
    auto next = stored.begin();
    for (auto t = range.from; t < range.to; t = next_bucket(range.granularity, t)) {
        if (next != stored.end() && next->start == t) {
            points.push_back(point_json(t, next->usage));
            ++next;
        } else {
            points.push_back(point_json(t, core::Usage{}));
        }
    }
    return points;
}

Reply series(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r, {"from", "to", "granularity"});
    const auto range = parse_series_query(r.query, s.clock.now());
    std::optional<std::vector<store::SeriesPoint>> stored;
    {
        auto lease = s.pool.acquire();
        stored = store::SubscriberQueries(*lease).usage_series(id, range.from, range.to,
                                                               unit_of(range.granularity));
    }
    if (!stored) {
        throw not_found("no subscriber '" + id + "'");
    }
    return json_reply(200, {{"subscriber", id},
                            {"granularity", granularity_name(range.granularity)},
                            {"from", core::iso8601_utc(range.from)},
                            {"to", core::iso8601_utc(range.to)},
                            {"points", fill_points(range, *stored)}});
}

}  // namespace

void add_series_routes(Router& router, Services& services) {
    auto& s = services;
    router.add({"GET", "/api/v1/subscribers/{id}/usage", Access::Read, false,
                [&s](const Request& r) { return series(s, r); }});
}

}  // namespace ctquota::api
