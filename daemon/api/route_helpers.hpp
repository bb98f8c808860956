#pragma once
// Small pieces shared by the route files: path ids, body media types, URL
// encoding of ids in Location headers.

#include <initializer_list>
#include <string>
#include <string_view>

#include "api/request.hpp"

namespace ctquota::api {

// The {id} of a subscriber path, after refusing query parameters not allowed. An id
// that cannot exist is answered like one that does not (404).
const std::string& subscriber_path_id(const Request& r,
                                      std::initializer_list<std::string_view> allowed_query = {});

// Bodies are read as JSON whatever they are labelled, except as something
// JSON cannot be (415). curl -d labels JSON as a form; refusing that helps no one.
void require_json(const Request& r);

// RFC 3986 unreserved characters stay, every other byte becomes %XX.
std::string percent_encode(const std::string& s);

}  // namespace ctquota::api
