#pragma once
// Usage notices: after a flush commits, the other gateways sharing the
// database re-evaluate the subscribers it changed (their quotas follow the
// sum over gateways). A flush announces them with NOTIFY ctquota_usage, whose
// payloads are limited to 8000 bytes: the ids go in as few payloads as fit,
// and a flush of more than kMaxNoticeIds subscribers announces itself by its
// transaction time instead ("every subscriber this gateway's flushes changed
// since"). A payload is "<gateway id>\n<id>,<id>,..." or
// "<gateway id>\nsince <microseconds since the epoch>".

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/subscriber_index.hpp"

namespace ctquota::core {

inline constexpr std::size_t kMaxNoticePayload = 7900;  // PostgreSQL's limit is 8000 bytes
inline constexpr std::size_t kMaxNoticeIds = 10000;     // more: one "since" notice

struct UsageNotice {
    std::string gateway;
    std::vector<SubscriberId> ids;         // the subscribers a flush changed
    std::optional<std::int64_t> since_us;  // or: everything changed since then
};

// The payloads announcing `ids` (empty when there are none, or when there
// are more than kMaxNoticeIds: the caller sends since_prefix() + its time).
std::vector<std::string> encode_usage_notices(std::string_view gateway,
                                              const std::vector<SubscriberId>& ids);
// What precedes the microseconds in a "since" payload.
std::string since_prefix(std::string_view gateway);
// nullopt for a payload that is neither form.
std::optional<UsageNotice> decode_usage_notice(std::string_view payload);

}  // namespace ctquota::core
