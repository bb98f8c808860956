#include "app/token_cli.hpp"

#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdio>

#include "api/tokens.hpp"
#include "app/cli.hpp"
#include "core/calendar.hpp"
#include "store/token_store.hpp"

namespace ctquota::app {
namespace {

int create(const Config& config, const std::vector<std::string>& args) {
    std::string role;
    std::string name;
    for (std::size_t i = 2; i < args.size(); ++i) {
        if ((args[i] == "--role" || args[i] == "--name") && i + 1 < args.size()) {
            (args[i] == "--role" ? role : name) = args[i + 1];
            ++i;
        } else {
            throw UsageError("token create: unexpected '" + args[i] + "'");
        }
    }
    if (!api::parse_role(role)) {
        throw UsageError("token create needs --role admin or --role billing");
    }
    const auto token = api::generate_token();
    store::Database db(config.database.url);
    const auto id = store::TokenStore(db).add(name, role, api::sha256_hex(token));
    spdlog::info("API token {} created (role {}{}); it is shown once, store it now", id, role,
                 name.empty() ? "" : ", name '" + name + "'");
    std::printf("%s\n", token.c_str());
    return 0;
}

int list(const Config& config) {
    store::Database db(config.database.url);
    std::printf("id\trole\tcreated_at\trevoked_at\tname\n");
    for (const auto& t : store::TokenStore(db).list()) {
        std::printf("%lld\t%s\t%s\t%s\t%s\n", static_cast<long long>(t.id), t.role.c_str(),
                    core::iso8601_utc(t.created_at).c_str(),
                    t.revoked_at ? core::iso8601_utc(*t.revoked_at).c_str() : "-", t.name.c_str());
    }
    return 0;
}

int revoke(const Config& config, const std::string& id_text) {
    std::int64_t id = 0;
    const auto* end = id_text.data() + id_text.size();
    const auto [ptr, ec] = std::from_chars(id_text.data(), end, id);
    if (id_text.empty() || ec != std::errc{} || ptr != end) {
        throw UsageError("token revoke needs a token id (see 'token list'), not '" + id_text + "'");
    }
    store::Database db(config.database.url);
    if (!store::TokenStore(db).revoke(id)) {
        spdlog::error("no active API token {}", id);
        return 1;
    }
    spdlog::info("API token {} revoked (running daemons stop accepting it within 10 s)", id);
    return 0;
}

}  // namespace

int run_token_command(const Config& config, const std::vector<std::string>& args) {
    const std::string sub = args.size() >= 2 ? args[1] : "";
    if (sub == "create") {
        return create(config, args);
    }
    if (sub == "list" && args.size() == 2) {
        return list(config);
    }
    if (sub == "revoke" && args.size() == 3) {
        return revoke(config, args[2]);
    }
    throw UsageError(
        "expected 'token create --role admin|billing [--name N]', 'token list' or "
        "'token revoke ID'");
}

}  // namespace ctquota::app
