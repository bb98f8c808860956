#pragma once
// Error bodies of the API: RFC 9457 problem details (application/problem+json).
// Every error leaves a handler as an ApiError carrying its Problem; the server
// turns it into the response. Pure: no HTTP library here.

#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace ctquota::api {

struct Problem {
    int status = 500;
    std::string type;  // a short slug; the body says "urn:ctquota:problem:<slug>"
    std::string title;
    std::string detail;  // what happened and what to do about it
    nlohmann::ordered_json extensions = nlohmann::ordered_json::object();  // e.g. "errors": [...]
    std::vector<std::pair<std::string, std::string>> headers;  // e.g. Allow, WWW-Authenticate
};

nlohmann::ordered_json problem_json(const Problem& p);

class ApiError : public std::exception {
  public:
    explicit ApiError(Problem p) : problem_(std::move(p)) {}
    [[nodiscard]] const Problem& problem() const { return problem_; }
    [[nodiscard]] const char* what() const noexcept override { return problem_.detail.c_str(); }

  private:
    Problem problem_;
};

// One field's complaint in a 422: {"field": "addresses[1]", "message": "..."}.
struct FieldError {
    std::string field;
    std::string message;
};

ApiError bad_request(std::string detail);                            // 400 malformed request
ApiError invalid_body(std::vector<FieldError> errors);               // 422 with "errors"
ApiError invalid_query(std::vector<FieldError> errors);              // 422 with "errors"
ApiError unauthorized(std::string detail);                           // 401 + WWW-Authenticate
ApiError forbidden(std::string detail);                              // 403
ApiError not_found(std::string detail);                              // 404
ApiError method_not_allowed(const std::vector<std::string>& allow);  // 405 + Allow
ApiError conflict(std::string detail);                               // 409
ApiError payload_too_large(std::uint64_t limit);                     // 413
ApiError unsupported_media_type(const std::string& content_type);    // 415
ApiError unavailable(std::string detail);                            // 503 + Retry-After

// The status line's reason phrase, for problems made from bare status codes.
const char* status_title(int status);

}  // namespace ctquota::api
