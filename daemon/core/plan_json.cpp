#include "core/plan_json.hpp"

#include <initializer_list>
#include <limits>
#include <string>

namespace ctquota::core {
namespace {

using nlohmann::json;

std::string join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string at(const std::string& path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
}

const json& object(const json& j, const std::string& path) {
    if (!j.is_object()) {
        throw PlanError(path.empty() ? "plan" : path, "expected an object");
    }
    return j;
}

void only_keys(const json& obj, const std::string& path,
               std::initializer_list<std::string_view> allowed) {
    for (const auto& [key, value] : obj.items()) {
        bool known = false;
        for (const auto a : allowed) {
            known = known || key == a;
        }
        if (!known) {
            throw PlanError(join(path, key), "unknown key");
        }
    }
}

std::string string_of(const json& j, const std::string& key) {
    if (!j.is_string()) {
        throw PlanError(key, "expected a string");
    }
    return j.get<std::string>();
}

std::uint64_t uint_of(const json& j, const std::string& key, std::uint64_t max) {
    if (j.is_number_unsigned() || (j.is_number_integer() && j.get<std::int64_t>() >= 0)) {
        const auto v = j.get<std::uint64_t>();
        if (v > max) {
            throw PlanError(key, "at most " + std::to_string(max));
        }
        return v;
    }
    if (j.is_number_integer()) {
        throw PlanError(key, "must not be negative");
    }
    throw PlanError(key, "expected a non-negative integer");
}

const json& array_of(const json& j, const std::string& key) {
    if (!j.is_array()) {
        throw PlanError(key, "expected an array");
    }
    return j;
}

std::chrono::minutes time_of(const json& j, const std::string& key) {
    const auto text = string_of(j, key);
    const auto m = parse_time_of_day(text);
    if (!m) {
        throw PlanError(key,
                        "expected a local time \"HH:MM\" (00:00..23:59), got \"" + text + "\"");
    }
    return *m;
}

Prefix prefix_of(const json& j, const std::string& key) {
    const auto text = string_of(j, key);
    const auto prefix = Prefix::parse(text);
    if (!prefix) {
        throw PlanError(key,
                        "expected an address or prefix like \"198.18.0.0/24\" or "
                        "\"2001:db8::/32\", got \"" +
                            text + "\"");
    }
    if (IpAddress::parse(text.substr(0, text.find('/'))) != prefix->address) {
        throw PlanError(key, "\"" + text + "\" has host bits set; did you mean \"" +
                                 prefix->to_string() + "\"?");
    }
    return *prefix;
}

CycleSpec cycle_of(const json& j) {
    const std::string path = "cycle";
    object(j, path);
    CycleSpec c;
    if (!j.contains("kind")) {
        throw PlanError("cycle.kind", "missing (\"monthly\" or \"every_n_days\")");
    }
    const auto kind = string_of(j["kind"], "cycle.kind");
    if (kind == "monthly") {
        only_keys(j, path, {"kind", "day", "time", "time_zone"});
        c.kind = CycleSpec::Kind::Monthly;
        if (j.contains("day")) {
            c.day = static_cast<int>(uint_of(j["day"], "cycle.day", 31));
        }
        if (j.contains("time")) {
            c.time_of_day = time_of(j["time"], "cycle.time");
        }
    } else if (kind == "every_n_days") {
        only_keys(j, path, {"kind", "days", "time_zone"});
        c.kind = CycleSpec::Kind::EveryNDays;
        if (!j.contains("days")) {
            throw PlanError("cycle.days", "missing (the cycle's length in days)");
        }
        c.days = static_cast<int>(uint_of(j["days"], "cycle.days", kMaxCycleDays));
    } else {
        throw PlanError("cycle.kind",
                        "expected \"monthly\" or \"every_n_days\", got \"" + kind + "\"");
    }
    if (j.contains("time_zone")) {
        c.time_zone = string_of(j["time_zone"], "cycle.time_zone");
    }
    return c;
}

Tier tier_of(const json& j, const std::string& path) {
    object(j, path);
    only_keys(j, path, {"at_percent", "action", "down_bps", "up_bps"});
    Tier t;
    if (!j.contains("at_percent")) {
        throw PlanError(join(path, "at_percent"), "missing");
    }
    t.at_percent =
        static_cast<unsigned>(uint_of(j["at_percent"], join(path, "at_percent"), kMaxPercent));
    if (!j.contains("action")) {
        throw PlanError(join(path, "action"), "missing (\"throttle\" or \"block\")");
    }
    const auto action = string_of(j["action"], join(path, "action"));
    const auto parsed = tier_action_from_string(action);
    if (!parsed) {
        throw PlanError(join(path, "action"),
                        "expected \"throttle\" or \"block\", got \"" + action + "\"");
    }
    t.action = *parsed;
    for (const auto* key : {"down_bps", "up_bps"}) {
        const auto full = join(path, key);
        if (t.action == Tier::Action::Block) {
            if (j.contains(key)) {
                throw PlanError(full, "a block tier takes no rate");
            }
            continue;
        }
        if (!j.contains(key)) {
            throw PlanError(full, "missing (a throttle tier needs down_bps and up_bps)");
        }
        const auto bps = uint_of(j[key], full, kMaxRateBps);
        (std::string_view(key) == "down_bps" ? t.rate.down_bps : t.rate.up_bps) = bps;
    }
    return t;
}

template <typename T, typename Fn>
std::vector<T> list_of(const json& root, const char* key, std::size_t max, Fn&& element) {
    std::vector<T> out;
    if (!root.contains(key)) {
        return out;
    }
    const auto& arr = array_of(root[key], key);
    if (arr.size() > max) {
        throw PlanError(key, "too many entries (at most " + std::to_string(max) + ")");
    }
    for (std::size_t i = 0; i < arr.size(); ++i) {
        out.push_back(element(arr[i], at(key, i)));
    }
    return out;
}

}  // namespace

nlohmann::json plan_to_json(const Plan& plan) {
    json cycle;
    if (plan.cycle.kind == CycleSpec::Kind::Monthly) {
        cycle = {{"kind", "monthly"},
                 {"day", plan.cycle.day},
                 {"time", format_time_of_day(plan.cycle.time_of_day)},
                 {"time_zone", plan.cycle.time_zone}};
    } else {
        cycle = {{"kind", "every_n_days"},
                 {"days", plan.cycle.days},
                 {"time_zone", plan.cycle.time_zone}};
    }
    json tiers = json::array();
    for (const auto& t : plan.tiers) {
        json tier = {{"at_percent", t.at_percent}, {"action", to_string(t.action)}};
        if (t.action == Tier::Action::Throttle) {
            tier["down_bps"] = t.rate.down_bps;
            tier["up_bps"] = t.rate.up_bps;
        }
        tiers.push_back(std::move(tier));
    }
    json windows = json::array();
    for (const auto& w : plan.free_windows) {
        windows.push_back(
            {{"start", format_time_of_day(w.start)}, {"end", format_time_of_day(w.end)}});
    }
    const auto prefixes = [](const std::vector<Prefix>& list) {
        json out = json::array();
        for (const auto& p : list) {
            out.push_back(p.to_string());
        }
        return out;
    };
    return json{{"name", plan.name},
                {"description", plan.description},
                {"cycle", std::move(cycle)},
                {"counts", to_string(plan.counts)},
                {"quota_bytes", plan.quota_bytes ? json(*plan.quota_bytes) : json(nullptr)},
                {"warn_percent", plan.warn_percent},
                {"tiers", std::move(tiers)},
                {"free_windows", std::move(windows)},
                {"zero_rated", prefixes(plan.zero_rated)},
                {"always_allowed", prefixes(plan.always_allowed)}};
}

Plan plan_from_json(const nlohmann::json& j, std::string_view name) {
    object(j, "");
    only_keys(j, "",
              {"name", "description", "cycle", "counts", "quota_bytes", "warn_percent", "tiers",
               "free_windows", "zero_rated", "always_allowed"});
    Plan plan;
    plan.name = std::string(name);
    if (j.contains("name") && string_of(j["name"], "name") != name) {
        throw PlanError("name", "\"" + j["name"].get<std::string>() +
                                    "\" differs from the plan's name \"" + plan.name + "\"");
    }
    if (j.contains("description")) {
        plan.description = string_of(j["description"], "description");
    }
    if (!j.contains("cycle")) {
        throw PlanError("cycle", "missing (the billing cycle)");
    }
    plan.cycle = cycle_of(j["cycle"]);
    if (j.contains("counts")) {
        const auto text = string_of(j["counts"], "counts");
        const auto counts = counted_directions_from_string(text);
        if (!counts) {
            throw PlanError("counts",
                            "expected \"both\", \"down\" or \"up\", got \"" + text + "\"");
        }
        plan.counts = *counts;
    }
    if (j.contains("quota_bytes") && !j["quota_bytes"].is_null()) {
        plan.quota_bytes = uint_of(j["quota_bytes"], "quota_bytes", kMaxQuotaBytes);
    }
    plan.warn_percent = list_of<unsigned>(
        j, "warn_percent", kMaxListEntries, [](const json& e, const std::string& key) {
            return static_cast<unsigned>(uint_of(e, key, kMaxPercent - 1));
        });
    plan.tiers = list_of<Tier>(j, "tiers", kMaxListEntries, tier_of);
    plan.free_windows = list_of<TimeWindow>(
        j, "free_windows", kMaxListEntries, [](const json& e, const std::string& path) {
            object(e, path);
            only_keys(e, path, {"start", "end"});
            for (const auto* key : {"start", "end"}) {
                if (!e.contains(key)) {
                    throw PlanError(join(path, key), "missing (a local time \"HH:MM\")");
                }
            }
            return TimeWindow{time_of(e["start"], join(path, "start")),
                              time_of(e["end"], join(path, "end"))};
        });
    plan.zero_rated = list_of<Prefix>(j, "zero_rated", kMaxPrefixEntries, prefix_of);
    plan.always_allowed = list_of<Prefix>(j, "always_allowed", kMaxPrefixEntries, prefix_of);
    validate_plan(plan);
    return plan;
}

}  // namespace ctquota::core
