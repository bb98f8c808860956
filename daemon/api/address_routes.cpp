// /api/v1/subscribers/{id}/addresses: bind and release single addresses, for
// RADIUS/DHCP hooks. The daemon's index picks changes up by itself (it polls
// the bindings' fingerprint).

#include "api/address_input.hpp"
#include "api/binding_errors.hpp"
#include "api/problem.hpp"
#include "api/route_helpers.hpp"
#include "api/routes.hpp"
#include "api/validation.hpp"
#include "core/calendar.hpp"
#include "store/binding_store.hpp"

namespace ctquota::api {
namespace {

constexpr const char* kCollection = "/api/v1/subscribers/{id}/addresses";

using json = nlohmann::ordered_json;

json binding_json(const std::string& id, const store::BindingView& b) {
    return {{"subscriber", id},
            {"address", b.prefix},
            {"valid_from", core::iso8601_utc(b.valid_from)},
            {"valid_until", b.valid_until ? json(core::iso8601_utc(*b.valid_until)) : json()}};
}

Reply bind(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r);
    require_json(r);
    const auto input = parse_new_binding(parse_json_object(r.body));
    std::optional<store::BindResult> result;
    try {
        auto lease = s.pool.acquire();
        result = store::BindingStore(*lease, s.binding_rules)
                     .bind(id, input.prefix, input.valid_from.value_or(s.clock.now()));
    } catch (const store::BindingRefused& e) {
        throw binding_refused(e, "address");
    } catch (const store::BindingConflict& e) {
        throw binding_conflict(e,
                               "release it there first (DELETE .../addresses/{cidr}), or bind it "
                               "from a time after that binding ends");
    }
    if (!result) {
        throw not_found("no subscriber '" + id + "'");
    }
    Reply reply = json_reply(result->created ? 201 : 200, binding_json(id, result->binding));
    reply.headers.emplace_back("Location", "/api/v1/subscribers/" + percent_encode(id) +
                                               "/addresses/" +
                                               percent_encode(result->binding.prefix));
    return reply;
}

Reply unbind(Services& s, const Request& r) {
    const auto& id = subscriber_path_id(r);
    const auto& text = r.param("cidr");
    std::string why;
    const auto prefix = parse_cidr(text, &why);
    if (!prefix) {
        throw not_found("no such binding: " + why +
                        " (write the prefix URL-encoded, like "
                        "100.64.0.9%2F32)");
    }
    store::UnbindResult result{};
    {
        auto lease = s.pool.acquire();
        result = store::BindingStore(*lease, s.binding_rules).unbind(id, *prefix, s.clock.now());
    }
    if (result == store::UnbindResult::UnknownSubscriber) {
        throw not_found("no subscriber '" + id + "'");
    }
    if (result == store::UnbindResult::NotBound) {
        throw not_found("subscriber '" + id + "' holds no binding of " + prefix->to_string() +
                        " now or later");
    }
    return no_content();
}

}  // namespace

void add_address_routes(Router& router, Services& services) {
    auto& s = services;
    router.add(
        {"POST", kCollection, Access::Write, false, [&s](const Request& r) { return bind(s, r); }});
    router.add({"DELETE", std::string(kCollection) + "/{cidr}", Access::Write, false,
                [&s](const Request& r) { return unbind(s, r); }});
}

}  // namespace ctquota::api
