#pragma once
// notify::http_post: one HTTP(S) POST with an overall deadline and a bounded
// read of the answer, for webhook deliveries. The deadline covers all of it
// (name resolution, connect, TLS handshake with certificate and host name
// checks, sending, the answer's status line and headers); only the status
// line and at most `max_header_bytes` of headers are read, never the body, so
// a receiver that answers slowly, or streams an endless answer, costs one
// deadline and a few KiB. Boost.Beast; this file and http_post.cpp are the
// only ones in notify/ that see it.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ctquota::notify {

struct PostRequest {
    std::string url;  // http:// or https://, host (name, IPv4 or [IPv6]) and optional port
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::string content_type = "application/json";
};

struct PostLimits {
    std::chrono::milliseconds deadline{5000};
    std::size_t max_header_bytes = 8 * 1024;
};

struct PostResult {
    std::optional<int> status;  // the answer's status code, when one arrived in time
    std::string error;          // why not (empty when status is set)
};

PostResult http_post(const PostRequest& request, const PostLimits& limits);

}  // namespace ctquota::notify
