#include "app/cli.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "app/daemon.hpp"
#include "app/token_cli.hpp"
#include "core/calendar.hpp"
#include "store/migrations.hpp"
#include "store/subscriber_store.hpp"

namespace ctquota::app {
namespace {

constexpr const char* kDefaultConfig = "/etc/ctquota/ctquotad.toml";

constexpr const char* kUsage = R"(usage: ctquotad [--config FILE] [--log-level LEVEL] [COMMAND]

With no command, runs the daemon in the current network namespace.

commands:
  migrate                                   apply schema migrations and exit
  subscriber add ID --address CIDR [...]    add a subscriber with its addresses
  subscriber list                           list subscribers and their addresses
  subscriber remove ID                      end a subscriber's bindings (usage is kept)
  usage ID                                  print the current cycle's totals as JSON
  token create --role admin|billing [--name N]
                                            make an API token; prints it (only) once
  token list                                list API tokens (never the tokens themselves)
  token revoke ID                           revoke an API token
  help                                      this text

options:
  --config FILE      configuration file (default /etc/ctquota/ctquotad.toml)
  --log-level LEVEL  trace, debug, info, warn, error (overrides [log] level)
  --version          print the version and exit

signals: SIGHUP reloads the plan files; SIGTERM and SIGINT flush and stop.
Manual: ctquotad(8).
)";

struct Invocation {
    std::string config_path = kDefaultConfig;
    std::string log_level;
    std::vector<std::string> command;
    bool version = false;
};

Invocation parse_args(int argc, char** argv) {
    Invocation inv;
    int i = 1;
    for (; i < argc; ++i) {
        const std::string arg = argv[i];
        if ((arg == "--config" || arg == "-c" || arg == "--log-level") && i + 1 < argc) {
            (arg == "--log-level" ? inv.log_level : inv.config_path) = argv[++i];
        } else if (arg == "--version") {
            inv.version = true;
        } else if (arg.starts_with("-") && arg != "-h" && arg != "--help") {
            throw UsageError("unknown or incomplete option '" + arg + "'");
        } else {
            break;
        }
    }
    for (; i < argc; ++i) {
        inv.command.emplace_back(argv[i]);
    }
    return inv;
}

int cmd_subscriber_add(const Config& config, const std::vector<std::string>& args) {
    if (args.size() < 3) {
        throw UsageError("subscriber add needs an ID");
    }
    std::vector<core::Prefix> prefixes;
    for (std::size_t i = 3; i < args.size(); ++i) {
        if (args[i] != "--address" || i + 1 >= args.size()) {
            throw UsageError("expected --address CIDR, got '" + args[i] + "'");
        }
        auto p = core::Prefix::parse(args[++i]);
        if (!p) {
            throw UsageError("'" + args[i] + "' is not an IPv4 or IPv6 address or prefix");
        }
        prefixes.push_back(*p);
    }
    store::Database db(config.database.url);
    store::SubscriberStore subscribers(db);
    // The same rules as the API's ([subscribers]); a refusal names the pool,
    // the limit or the holder, and exits non-zero like every other error.
    subscribers.add(args[2], prefixes, core::SystemClock{}.now(), config.subscribers);
    spdlog::info("subscriber '{}' added with {} addresses", args[2], prefixes.size());
    return 0;
}

int cmd_subscriber_list(const Config& config) {
    store::Database db(config.database.url);
    store::SubscriberStore subscribers(db);
    for (const auto& s : subscribers.list()) {
        std::string addresses;
        for (const auto& a : s.addresses) {
            addresses += (addresses.empty() ? "" : " ") + a;
        }
        std::printf("%s\t%s\n", s.external_id.c_str(), addresses.c_str());
    }
    return 0;
}

int cmd_subscriber_remove(const Config& config, const std::vector<std::string>& args) {
    if (args.size() != 3) {
        throw UsageError("subscriber remove needs exactly one ID");
    }
    store::Database db(config.database.url);
    store::SubscriberStore subscribers(db);
    if (!subscribers.remove(args[2], core::SystemClock{}.now())) {
        spdlog::error("no subscriber '{}'", args[2]);
        return 1;
    }
    return 0;
}

int cmd_usage(const Config& config, const std::vector<std::string>& args) {
    if (args.size() != 2) {
        throw UsageError("usage needs exactly one subscriber ID");
    }
    store::Database db(config.database.url);
    store::SubscriberStore subscribers(db);
    const auto now = core::SystemClock{}.now();
    auto totals = subscribers.current_usage(args[1], now);
    if (!totals) {
        spdlog::error("no subscriber '{}'", args[1]);
        return 1;
    }
    nlohmann::json out = {
        {"subscriber", totals->external_id},
        {"cycle_start", core::iso8601_utc(totals->cycle_start)},
        {"up_bytes", totals->usage.up.bytes},
        {"down_bytes", totals->usage.down.bytes},
        {"up_packets", totals->usage.up.packets},
        {"down_packets", totals->usage.down.packets},
        {"updated_at",
         totals->updated_at ? nlohmann::json(core::iso8601_utc(*totals->updated_at)) : nullptr},
    };
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

int dispatch(const Config& config, const std::vector<std::string>& cmd) {
    if (cmd.empty()) {
        return run_daemon(config);
    }
    if (cmd[0] == "migrate" && cmd.size() == 1) {
        store::Database db(config.database.url);
        const int n = store::apply_migrations(db, schema_dir(config));
        spdlog::info("{} migrations applied", n);
        return 0;
    }
    if (cmd[0] == "usage") {
        return cmd_usage(config, cmd);
    }
    if (cmd[0] == "token") {
        return run_token_command(config, cmd);
    }
    if (cmd[0] == "subscriber" && cmd.size() >= 2) {
        if (cmd[1] == "add") {
            return cmd_subscriber_add(config, cmd);
        }
        if (cmd[1] == "list" && cmd.size() == 2) {
            return cmd_subscriber_list(config);
        }
        if (cmd[1] == "remove") {
            return cmd_subscriber_remove(config, cmd);
        }
    }
    throw UsageError("unknown command '" + cmd[0] + (cmd.size() > 1 ? " " + cmd[1] : "") + "'");
}

void setup_logging(const std::string& level) {
    auto logger = spdlog::stderr_color_mt("ctquotad");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
    spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

int run_cli(int argc, char** argv) {
    try {
        const Invocation inv = parse_args(argc, argv);
        if (inv.version) {
            std::printf("ctquotad %s\n", CTQUOTA_VERSION);
            return 0;
        }
        if (!inv.command.empty() &&
            (inv.command[0] == "help" || inv.command[0] == "-h" || inv.command[0] == "--help")) {
            std::fputs(kUsage, stdout);
            return 0;
        }
        const Config config = load_config(inv.config_path);
        setup_logging(inv.log_level.empty() ? config.log.level : inv.log_level);
        return dispatch(config, inv.command);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "ctquotad: %s\n\n%s", e.what(), kUsage);
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ctquotad: %s\n", e.what());
        return 1;
    }
}

}  // namespace ctquota::app
