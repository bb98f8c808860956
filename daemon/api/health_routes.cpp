// /healthz, /readyz, /metrics and /api/v1/openapi.json: public, cheap, and
// never touching the database themselves (readiness reads the flags the
// daemon's threads keep; the OpenAPI document is compiled in).

#include "api/openapi_document.hpp"
#include "api/problem.hpp"
#include "api/routes.hpp"

namespace ctquota::api {
namespace {

Reply healthz(const Request&) {
    return json_reply(200, {{"status", "ok"}});
}

Reply readyz(const metrics::Metrics& metrics) {
    const bool database = metrics.database_ok.load();
    const bool reader = metrics.reader_running.load();
    const nlohmann::ordered_json checks = {{"database", database ? "ok" : "failing"},
                                           {"conntrack_reader", reader ? "running" : "stopped"}};
    if (database && reader) {
        return json_reply(200, {{"status", "ready"}, {"checks", checks}});
    }
    std::string detail = "not ready:";
    if (!database) {
        detail += " the database is unreachable or its last write failed;";
    }
    if (!reader) {
        detail += " the conntrack reader is not running (still starting, or stopping);";
    }
    detail.pop_back();
    Problem p = unavailable(detail).problem();
    p.extensions["checks"] = checks;
    throw ApiError(std::move(p));
}

}  // namespace

void add_health_routes(Router& router, Services& services) {
    router.add({"GET", "/healthz", Access::Public, true, healthz});
    router.add({"GET", "/readyz", Access::Public, true,
                [&services](const Request&) { return readyz(services.metrics); }});
    router.add({"GET", "/metrics", Access::Public, true, [&services](const Request&) {
                    return Reply{200,
                                 "text/plain; version=0.0.4; charset=utf-8",
                                 services.metrics.render_prometheus(),
                                 {}};
                }});
    router.add({"GET", "/api/v1/openapi.json", Access::Public, false, [](const Request&) {
                    return Reply{200, "application/json", std::string(openapi_document()), {}};
                }});
}

Router make_router(Services& services) {
    Router router;
    add_health_routes(router, services);
    add_subscriber_routes(router, services);
    add_usage_routes(router, services);
    add_series_routes(router, services);
    add_address_routes(router, services);
    add_plan_routes(router, services);
    add_quota_routes(router, services);
    add_topup_routes(router, services);
    add_event_routes(router, services);
    add_nat_lookup_routes(router, services);
    return router;
}

}  // namespace ctquota::api
