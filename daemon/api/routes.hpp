#pragma once
// The API's routes, grouped by resource. Handlers validate and translate; the
// work is done by store/ (SQL) and core/ (cycles, addresses).

#include <filesystem>

#include "api/db_pool.hpp"
#include "api/router.hpp"
#include "core/binding_rules.hpp"
#include "core/clock.hpp"
#include "metrics/metrics.hpp"

namespace ctquota::api {

struct Services {
    DatabasePool& pool;
    const core::Clock& clock;
    metrics::Metrics& metrics;
    const core::BindingRules& binding_rules;
};

void add_health_routes(Router& router, Services& services);
void add_subscriber_routes(Router& router, Services& services);
void add_usage_routes(Router& router, Services& services);
void add_series_routes(Router& router, Services& services);
void add_address_routes(Router& router, Services& services);
void add_plan_routes(Router& router, Services& services);
void add_quota_routes(Router& router, Services& services);
void add_topup_routes(Router& router, Services& services);
void add_event_routes(Router& router, Services& services);
void add_nat_lookup_routes(Router& router, Services& services);  // the flow log ([flowlog])

// Every route of the API in one router.
Router make_router(Services& services);

// The web page's files under `web_dir` (web_routes.cpp; index.html also at /).
// Not part of make_router: the page is a client of the API, not in its document.
void add_web_routes(Router& router, const std::filesystem::path& web_dir);

}  // namespace ctquota::api
