#pragma once
// Routes: method + path pattern ("/api/v1/subscribers/{id}") -> handler, with
// the access each needs. Matching is on the raw (percent-encoded) path, split
// at '/', and each segment decoded afterwards, so an id may contain "%2F".
// Unknown paths are 404, a known path with another method 405 (with Allow).
// Pure: no HTTP library here.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/request.hpp"

namespace ctquota::api {

enum class Access : std::uint8_t {
    Public,  // no token (health, metrics)
    Read,    // any valid token
    Write,   // an admin token
};

using Handler = std::function<Reply(const Request&)>;

struct Route {
    std::string method;
    std::string pattern;
    Access access = Access::Read;
    bool quiet = false;  // logged at debug level (probes, scrapes)
    Handler handler;
};

struct RouteMatch {
    const Route* route = nullptr;
    std::map<std::string, std::string> params;
};

class Router {
  public:
    void add(Route route);
    // Throws ApiError: 404 (no such path), 405 (path exists, method does not),
    // 400 (a segment's percent-encoding is broken). HEAD matches GET routes.
    [[nodiscard]] RouteMatch match(std::string_view method, std::string_view raw_path) const;
    [[nodiscard]] const std::vector<Route>& routes() const { return routes_; }

  private:
    std::vector<Route> routes_;
};

// "%41b+c" -> "Ab+c" ('+' stays: it is a plus in a path); nullopt on a bad escape.
std::optional<std::string> percent_decode(std::string_view s);

}  // namespace ctquota::api
