#include "api/request.hpp"

namespace ctquota::api {

std::string to_body(const nlohmann::ordered_json& j) {
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Reply json_reply(int status, const nlohmann::ordered_json& body) {
    return Reply{status, "application/json", to_body(body), {}};
}

Reply no_content() {
    return Reply{204, "", "", {}};
}

}  // namespace ctquota::api
