// The enforcement tests' hand on the Enforcer: one command per run, in the
// current network namespace (the python test runs it with `ip netns exec`).
//   enforce_driver apply|reconcile   < {"config":{...},"allowed":{...},"targets":[...]}
//   enforce_driver read              < {"config":{...}}
//   enforce_driver teardown          < {"config":{...}}
// Prints one JSON object: the report (apply/reconcile) or the kernel state.

#include <spdlog/spdlog.h>

#include <iostream>
#include <iterator>
#include <string>

#include "target_json.hpp"

using namespace ctquota;
using namespace ctquota::enforce;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: enforce_driver apply|reconcile|read|teardown < request.json\n";
        return 2;
    }
    spdlog::set_default_logger(spdlog::default_logger()->clone("driver"));
    spdlog::set_level(spdlog::level::warn);
    const std::string op = argv[1];
    try {
        const std::string text{std::istreambuf_iterator<char>(std::cin), {}};
        const auto req = nlohmann::json::parse(text.empty() ? "{}" : text);
        EnforceConfig cfg;
        const auto c = req.value("config", nlohmann::json::object());
        cfg.table = c.value("table", cfg.table);
        cfg.subscriber_interface = c.value("subscriber_interface", std::string());
        cfg.delete_conntrack_on_block = c.value("delete_conntrack_on_block", true);
        cfg.arm_quota_below_bytes = c.value("arm_quota_below_bytes", std::uint64_t{0});
        cfg.direct_queue_packets = c.value("direct_queue_packets", cfg.direct_queue_packets);
        Enforcer enforcer(cfg);
        std::map<std::string, std::vector<core::Prefix>> allowed;
        const auto allowed_json = req.value("allowed", nlohmann::json::object());
        for (const auto& [plan, list] : allowed_json.items()) {
            for (const auto& p : list) {
                allowed[plan].push_back(testing::prefix_of(p.get<std::string>()));
            }
        }
        enforcer.set_allowed(allowed);
        std::vector<SubscriberTarget> targets;
        const auto targets_json = req.value("targets", nlohmann::json::array());
        for (const auto& t : targets_json) {
            targets.push_back(testing::target_from_json(t));
        }
        nlohmann::json out;
        if (op == "apply") {
            out = testing::to_json(enforcer.apply(targets));
        } else if (op == "reconcile") {
            out = testing::to_json(enforcer.reconcile(targets));
        } else if (op == "read") {
            out = testing::to_json(enforcer.read_back());
        } else if (op == "teardown") {
            enforcer.teardown();
            out = {{"ok", true}};
        } else {
            std::cerr << "unknown command " << op << "\n";
            return 2;
        }
        std::cout << out.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cout << nlohmann::json{{"fatal", e.what()}}.dump() << std::endl;
        return 1;
    }
}
