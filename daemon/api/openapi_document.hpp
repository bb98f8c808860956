#pragma once
// The OpenAPI 3.1 document of the API. Its source is daemon/api/openapi.json,
// compiled in at build time (CMake configure_file), so the daemon needs no
// file at run time; tests/unit/api_openapi_test.cpp checks it against the routes.

#include <string_view>

namespace ctquota::api {

std::string_view openapi_document();

}  // namespace ctquota::api
