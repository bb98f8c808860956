#include "api/problem.hpp"

namespace ctquota::api {
namespace {

ApiError make(int status, const char* type, std::string detail) {
    return ApiError(Problem{status, type, status_title(status), std::move(detail), {}, {}});
}

ApiError field_errors(const char* type, std::string detail, std::vector<FieldError> errors) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < errors.size(); ++i) {
        detail += (i != 0 ? "; " : "") + errors[i].field + ": " + errors[i].message;
        list.push_back({{"field", errors[i].field}, {"message", errors[i].message}});
    }
    auto e = make(422, type, std::move(detail));
    Problem p = e.problem();
    p.extensions["errors"] = std::move(list);
    return ApiError(std::move(p));
}

}  // namespace

nlohmann::ordered_json problem_json(const Problem& p) {
    nlohmann::ordered_json out = {{"type", "urn:ctquota:problem:" + p.type},
                                  {"title", p.title},
                                  {"status", p.status},
                                  {"detail", p.detail}};
    for (const auto& [key, value] : p.extensions.items()) {
        out[key] = value;
    }
    return out;
}

const char* status_title(int status) {
    switch (status) {
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 409:
            return "Conflict";
        case 411:
            return "Length Required";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 415:
            return "Unsupported Media Type";
        case 416:
            return "Range Not Satisfiable";
        case 422:
            return "Unprocessable Content";
        case 500:
            return "Internal Server Error";
        case 503:
            return "Service Unavailable";
        default:
            return status < 500 ? "Client Error" : "Server Error";
    }
}

ApiError bad_request(std::string detail) {
    return make(400, "bad-request", std::move(detail));
}

ApiError invalid_body(std::vector<FieldError> errors) {
    return field_errors("invalid-body", "the request body is invalid: ", std::move(errors));
}

ApiError invalid_query(std::vector<FieldError> errors) {
    return field_errors("invalid-query", "the query parameters are invalid: ", std::move(errors));
}

ApiError unauthorized(std::string detail) {
    Problem p = make(401, "unauthorized", std::move(detail)).problem();
    p.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"ctquota\"");
    return ApiError(std::move(p));
}

ApiError forbidden(std::string detail) {
    return make(403, "forbidden", std::move(detail));
}

ApiError not_found(std::string detail) {
    return make(404, "not-found", std::move(detail));
}

ApiError method_not_allowed(const std::vector<std::string>& allow) {
    std::string list;
    for (const auto& m : allow) {
        list += (list.empty() ? "" : ", ") + m;
    }
    Problem p = make(405, "method-not-allowed", "this path accepts " + list).problem();
    p.headers.emplace_back("Allow", list);
    return ApiError(std::move(p));
}

ApiError conflict(std::string detail) {
    return make(409, "conflict", std::move(detail));
}

ApiError payload_too_large(std::uint64_t limit) {
    return make(413, "body-too-large",
                "the request body is larger than " + std::to_string(limit) +
                    " bytes, the limit set by [api] max_body_bytes");
}

ApiError unsupported_media_type(const std::string& content_type) {
    return make(
        415, "unsupported-media-type",
        "the body must be JSON (Content-Type: application/json), not '" + content_type + "'");
}

ApiError unavailable(std::string detail) {
    Problem p = make(503, "unavailable", std::move(detail)).problem();
    p.headers.emplace_back("Retry-After", "5");
    return ApiError(std::move(p));
}

}  // namespace ctquota::api
