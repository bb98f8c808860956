#include "api/route_helpers.hpp"

#include <cctype>

#include "api/problem.hpp"
#include "api/validation.hpp"

namespace ctquota::api {

const std::string& subscriber_path_id(const Request& r,
                                      std::initializer_list<std::string_view> allowed_query) {
    check_query(r.query, allowed_query);
    const auto& id = r.param("id");
    if (subscriber_id_problem(id)) {
        throw not_found("no subscriber with this id (ids are 1-200 bytes of UTF-8 text)");
    }
    return id;
}

store::SubscriberQueries::Ref subscriber_ref(store::Database& db, const std::string& id) {
    auto ref = store::SubscriberQueries(db).ref(id);
    if (!ref) {
        throw not_found("no subscriber '" + id + "'");
    }
    return *std::move(ref);
}

void require_json(const Request& r) {
    const auto type = r.header("content-type");
    auto media = type.substr(0, type.find(';'));
    for (auto& c : media) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    media.erase(media.find_last_not_of(' ') + 1);
    const bool ok = type.empty() || media == "application/json" || media.ends_with("+json") ||
                    media == "application/x-www-form-urlencoded" || media == "text/plain";
    if (!ok) {
        throw unsupported_media_type(type.substr(0, 100));
    }
}

std::string percent_encode(const std::string& s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            out += '%';
            out += kHex[u >> 4];
            out += kHex[u & 0xf];
        }
    }
    return out;
}

}  // namespace ctquota::api
