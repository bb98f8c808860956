#include "core/usage_notice.hpp"

#include <charconv>

namespace ctquota::core {
namespace {

constexpr std::string_view kSince = "since ";

template <typename T>
std::optional<T> number(std::string_view text) {
    T v{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
        return std::nullopt;
    }
    return v;
}

}  // namespace

std::string since_prefix(std::string_view gateway) {
    return std::string(gateway) + "\n" + std::string(kSince);
}

std::vector<std::string> encode_usage_notices(std::string_view gateway,
                                              const std::vector<SubscriberId>& ids) {
    std::vector<std::string> out;
    if (ids.empty() || ids.size() > kMaxNoticeIds) {
        return out;
    }
    const std::string head = std::string(gateway) + "\n";
    std::string payload = head;
    for (const auto id : ids) {
        const auto text = std::to_string(id);
        if (payload.size() > head.size() && payload.size() + 1 + text.size() > kMaxNoticePayload) {
            out.push_back(std::move(payload));
            payload = head;
        }
        if (payload.size() > head.size()) {
            payload += ',';
        }
        payload += text;
    }
    out.push_back(std::move(payload));
    return out;
}

std::optional<UsageNotice> decode_usage_notice(std::string_view payload) {
    const auto nl = payload.rfind('\n');
    if (nl == std::string_view::npos) {
        return std::nullopt;
    }
    UsageNotice n;
    n.gateway = std::string(payload.substr(0, nl));
    auto rest = payload.substr(nl + 1);
    if (rest.starts_with(kSince)) {
        n.since_us = number<std::int64_t>(rest.substr(kSince.size()));
        return n.since_us ? std::optional(std::move(n)) : std::nullopt;
    }
    while (!rest.empty()) {
        const auto comma = rest.find(',');
        const auto id = number<SubscriberId>(rest.substr(0, comma));
        if (!id) {
            return std::nullopt;
        }
        n.ids.push_back(*id);
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
    if (n.ids.empty()) {
        return std::nullopt;
    }
    return n;
}

}  // namespace ctquota::core
