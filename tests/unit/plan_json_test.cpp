#include <doctest/doctest.h>

#include <string>

#include "core/plan_json.hpp"

using namespace ctquota::core;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const char* kHome = R"({
  "name": "home-100g", "description": "Home 100 GB",
  "cycle": {"kind": "monthly", "day": 1, "time": "00:00", "time_zone": "Europe/Berlin"},
  "counts": "both", "quota_bytes": 100000000000, "warn_percent": [80, 95],
  "tiers": [{"at_percent": 100, "action": "throttle", "down_bps": 2000000, "up_bps": 1000000}],
  "free_windows": [{"start": "01:00", "end": "07:00"}],
  "zero_rated": ["198.18.0.0/24"], "always_allowed": ["198.18.0.53/32"]
})";

Plan full_plan() {
    Plan p;
    p.name = "full";
    p.description = "every field set";
    p.cycle = CycleSpec{CycleSpec::Kind::Monthly, 31, 6h + 30min, "America/New_York", 30};
    p.counts = CountedDirections::Down;
    p.quota_bytes = 1'500'000'000;
    p.warn_percent = {50, 80, 120};
    p.tiers = {Tier{100, Tier::Action::Throttle, Rate{2'000'000, 1'000'000}},
               Tier{150, Tier::Action::Throttle, Rate{500'000, 250'000}},
               Tier{200, Tier::Action::Block, {}}};
    p.free_windows = {TimeWindow{22h, 6h}, TimeWindow{12h, 13h}};
    p.zero_rated = {*Prefix::parse("198.18.0.0/24"), *Prefix::parse("2001:db8::/32")};
    p.always_allowed = {*Prefix::parse("198.18.0.53/32")};
    return p;
}

}  // namespace

TEST_CASE("the contract's JSON example parses into the expected plan") {
    const auto plan = plan_from_json(json::parse(kHome), "home-100g");
    CHECK(plan.name == "home-100g");
    CHECK(plan.cycle.kind == CycleSpec::Kind::Monthly);
    CHECK(plan.cycle.time_zone == "Europe/Berlin");
    CHECK(plan.quota_bytes == 100'000'000'000ull);
    CHECK(plan.warn_percent == std::vector<unsigned>{80, 95});
    REQUIRE(plan.tiers.size() == 1);
    CHECK(plan.tiers[0].rate == Rate{2'000'000, 1'000'000});
    CHECK(plan.free_windows[0].start == 1h);
    CHECK(plan.free_windows[0].end == 7h);
    CHECK(plan.always_allowed[0].to_string() == "198.18.0.53/32");
    CHECK(plan_to_json(plan) == json::parse(kHome));
}

TEST_CASE("plans round-trip through JSON") {
    Plan every_n;
    every_n.name = "every-n";
    every_n.cycle.kind = CycleSpec::Kind::EveryNDays;
    every_n.cycle.days = 7;
    every_n.cycle.time_zone = "Asia/Kolkata";
    every_n.quota_bytes = 0;
    Plan unlimited;
    unlimited.name = "unlimited";
    for (const auto& plan : {full_plan(), every_n, unlimited}) {
        CAPTURE(plan.name);
        const auto j = plan_to_json(plan);
        CHECK(plan_from_json(j, plan.name) == plan);
        CHECK(plan_from_json(json::parse(j.dump()), plan.name) == plan);
    }
    CHECK(plan_to_json(unlimited)["quota_bytes"].is_null());
    CHECK_FALSE(plan_to_json(every_n)["cycle"].contains("day"));
    CHECK_FALSE(plan_to_json(full_plan())["tiers"][2].contains("down_bps"));
}

TEST_CASE("defaults: only the cycle is required") {
    const auto plan = plan_from_json(json::parse(R"({"cycle": {"kind": "monthly"}})"), "minimal");
    CHECK(plan.name == "minimal");
    CHECK_FALSE(plan.quota_bytes);
    CHECK(plan.cycle.day == 1);
    CHECK(plan.cycle.time_zone == "UTC");
    CHECK(plan.counts == CountedDirections::Both);
}

TEST_CASE("bad plans name the offending key") {
    struct Row {
        const char* what;
        const char* patch;  // JSON merge patch on kHome (null removes a key)
        const char* key;
    };
    const Row rows[] = {
        {"unknown key", R"({"colour": "red"})", "colour"},
        {"negative quota", R"({"quota_bytes": -5})", "quota_bytes"},
        {"quota in units", R"({"quota_bytes": "100 GB"})", "quota_bytes"},
        {"fractional quota", R"({"quota_bytes": 1.5})", "quota_bytes"},
        {"absurd quota", R"({"quota_bytes": 2000000000000000000})", "quota_bytes"},
        {"huge quota (a float in JSON)", R"({"quota_bytes": 1e30})", "quota_bytes"},
        {"unknown zone", R"({"cycle": {"time_zone": "Mars/Olympus"}})", "cycle.time_zone"},
        {"zone not a string", R"({"cycle": {"time_zone": 1}})", "cycle.time_zone"},
        {"day 32", R"({"cycle": {"day": 32}})", "cycle.day"},
        {"day 0", R"({"cycle": {"day": 0}})", "cycle.day"},
        {"time 24:00", R"({"cycle": {"time": "24:00"}})", "cycle.time"},
        {"time without colon", R"({"cycle": {"time": "0100"}})", "cycle.time"},
        {"weekly", R"({"cycle": {"kind": "weekly"}})", "cycle.kind"},
        {"days on a monthly cycle", R"({"cycle": {"days": 30}})", "cycle.days"},
        {"day on an every_n_days cycle",
         R"({"cycle": {"kind": "every_n_days", "days": 30, "time": null}})", "cycle.day"},
        {"every_n_days without days",
         R"({"cycle": {"kind": "every_n_days", "day": null, "time": null}})", "cycle.days"},
        {"every 400 days",
         R"({"cycle": {"kind": "every_n_days", "days": 400, "day": null, "time": null}})",
         "cycle.days"},
        {"no cycle", R"({"cycle": null})", "cycle"},
        {"cycle not an object", R"({"cycle": "monthly"})", "cycle"},
        {"tiers descending",
         R"({"tiers": [{"at_percent": 100, "action": "throttle", "down_bps": 2000000,
             "up_bps": 1000000}, {"at_percent": 90, "action": "block"}]})",
         "tiers[1].at_percent"},
        {"throttle without up",
         R"({"tiers": [{"at_percent": 100, "action": "throttle", "down_bps": 2000000}]})",
         "tiers[0].up_bps"},
        {"block with a rate",
         R"({"tiers": [{"at_percent": 100, "action": "block", "down_bps": 1}]})",
         "tiers[0].down_bps"},
        {"rate too low",
         R"({"tiers": [{"at_percent": 100, "action": "throttle", "down_bps": 5, "up_bps": 5000}]})",
         "tiers[0].down_bps"},
        {"rate absurd",
         R"({"tiers": [{"at_percent": 100, "action": "throttle", "down_bps": 5000,
             "up_bps": 5000000000000000}]})",
         "tiers[0].up_bps"},
        {"tier after block",
         R"({"tiers": [{"at_percent": 100, "action": "block"},
             {"at_percent": 150, "action": "throttle", "down_bps": 5000, "up_bps": 5000}]})",
         "tiers[1]"},
        {"unknown action", R"({"tiers": [{"at_percent": 100, "action": "slow"}]})",
         "tiers[0].action"},
        {"tier without percent", R"({"tiers": [{"action": "block"}]})", "tiers[0].at_percent"},
        {"tier at 0%", R"({"tiers": [{"at_percent": 0, "action": "block"}]})",
         "tiers[0].at_percent"},
        {"tier unknown key", R"({"tiers": [{"at_percent": 100, "action": "block", "x": 1}]})",
         "tiers[0].x"},
        {"tiers not an array", R"({"tiers": {"at_percent": 100}})", "tiers"},
        {"warnings descending", R"({"warn_percent": [95, 80]})", "warn_percent[1]"},
        {"warning 0", R"({"warn_percent": [0]})", "warn_percent[0]"},
        {"warning 1000", R"({"warn_percent": [1000]})", "warn_percent[0]"},
        {"warning a string", R"({"warn_percent": ["80"]})", "warn_percent[0]"},
        {"window end malformed", R"({"free_windows": [{"start": "01:00", "end": "1:00"}]})",
         "free_windows[0].end"},
        {"window empty", R"({"free_windows": [{"start": "01:00", "end": "01:00"}]})",
         "free_windows[0].end"},
        {"window without start", R"({"free_windows": [{"end": "01:00"}]})",
         "free_windows[0].start"},
        {"window unknown key",
         R"({"free_windows": [{"start": "01:00", "end": "02:00", "days": "mon"}]})",
         "free_windows[0].days"},
        {"host bits set", R"({"zero_rated": ["198.18.0.1/24"]})", "zero_rated[0]"},
        {"not a prefix", R"({"always_allowed": ["198.18.0.53", "portal.example"]})",
         "always_allowed[1]"},
        {"prefix list not an array", R"({"always_allowed": "198.18.0.53"})", "always_allowed"},
        {"counts sideways", R"({"counts": "sideways"})", "counts"},
        {"name differs", R"({"name": "other"})", "name"},
        {"unlimited with tiers", R"({"quota_bytes": null})", "tiers"},
        {"unlimited with warnings", R"({"quota_bytes": null, "tiers": []})", "warn_percent"},
        {"description not a string", R"({"description": 5})", "description"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.what);
        auto j = json::parse(kHome);
        j.merge_patch(json::parse(row.patch));
        try {
            plan_from_json(j, "home-100g");
            FAIL("accepted");
        } catch (const PlanError& e) {
            CAPTURE(e.what());
            CHECK(e.key == row.key);
            CHECK_FALSE(e.message.empty());
        }
    }
}

TEST_CASE("the name must be a plan name and the body an object") {
    auto j = json::parse(kHome);
    j.erase("name");
    for (const char* bad : {"Home", "", "a/b", "-x"}) {
        CAPTURE(bad);
        try {
            plan_from_json(j, bad);
            FAIL("accepted");
        } catch (const PlanError& e) {
            CHECK(e.key == "name");
        }
    }
    try {
        plan_from_json(json::array(), "x");
        FAIL("accepted");
    } catch (const PlanError& e) {
        CHECK(e.key == "plan");
    }
}
