#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "core/plan_json.hpp"
#include "policy/plan_files.hpp"

using namespace ctquota;
using namespace ctquota::policy;
using namespace std::chrono_literals;

namespace {

// A scratch directory removed again at the end of the test.
class TempDir {
  public:
    TempDir() {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / "ctquota-plans.XXXXXX").string();
        if (mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }
    void write(const std::string& name, const std::string& text) const {
        std::ofstream(path_ / name) << text;
    }

  private:
    std::filesystem::path path_;
};

const char* kGood = R"(description = "ok"
quota = "10 GB"

[cycle]
kind = "monthly"

[[tiers]]
at_percent = 100
action = "block"
)";

}  // namespace

TEST_CASE("every shipped policy file loads") {
    const auto set = load_plan_dir(CTQUOTA_POLICIES_DIR);
    CHECK(set.size() == 5);
    for (const char* name :
         {"unlimited", "home-100g", "prepaid-10g", "night-free", "business-fup"}) {
        CAPTURE(name);
        const auto* plan = set.find(name);
        REQUIRE(plan != nullptr);
        CHECK(plan->name == name);
        CHECK(set.source_file(name)->filename() == std::string(name) + ".toml");
        CHECK_FALSE(plan->description.empty());
        // What the files say survives the JSON shape the database stores.
        CHECK(core::plan_from_json(core::plan_to_json(*plan), name) == *plan);
    }
    CHECK(set.find("nosuch") == nullptr);
    CHECK(set.source_file("nosuch") == nullptr);

    const auto& home = *set.find("home-100g");
    CHECK(home.quota_bytes == 100'000'000'000ull);
    CHECK(home.counts == core::CountedDirections::Both);
    CHECK(home.warn_percent == std::vector<unsigned>{80, 95});
    CHECK(home.cycle.kind == core::CycleSpec::Kind::Monthly);
    CHECK(home.cycle.day == 1);
    REQUIRE(home.tiers.size() == 1);
    CHECK(home.tiers[0].action == core::Tier::Action::Throttle);
    CHECK(home.tiers[0].rate == core::Rate{2'000'000, 1'000'000});

    const auto& prepaid = *set.find("prepaid-10g");
    CHECK(prepaid.quota_bytes == 10'000'000'000ull);
    CHECK(prepaid.cycle.kind == core::CycleSpec::Kind::EveryNDays);
    REQUIRE(prepaid.tiers.size() == 1);
    CHECK(prepaid.tiers[0].action == core::Tier::Action::Block);
    REQUIRE(prepaid.always_allowed.size() == 1);
    CHECK(prepaid.always_allowed[0].to_string() == "198.18.0.53/32");

    const auto& night = *set.find("night-free");
    REQUIRE(night.free_windows.size() == 1);
    CHECK(night.free_windows[0].start == 1h);
    CHECK(night.free_windows[0].end == 7h);

    const auto& biz = *set.find("business-fup");
    REQUIRE(biz.tiers.size() == 2);
    CHECK(biz.tiers[0].rate == core::Rate{20'000'000, 20'000'000});
    CHECK(biz.tiers[1].at_percent == 150);
    CHECK(biz.tiers[1].rate == core::Rate{5'000'000, 5'000'000});

    CHECK_FALSE(set.find("unlimited")->quota_bytes);
}

TEST_CASE("plan files take human units and unquoted times") {
    const auto plan = parse_plan_file(R"(quota = "1.5 GiB"
counts = "down"
free_windows = [{ start = 22:30:00, end = "06:00" }]
[cycle]
kind = "monthly"
day = 31
time = 01:00:00
time_zone = "Asia/Kolkata"
[[tiers]]
at_percent = 100
action = "throttle"
down = "500 kbit/s"
up = 64000
)",
                                      "/etc/ctquota/policies/units.toml");
    CHECK(plan.name == "units");
    CHECK(plan.quota_bytes == 3ull << 29);
    CHECK(plan.counts == core::CountedDirections::Down);
    CHECK(plan.cycle.time_of_day == 1h);
    CHECK(plan.free_windows[0].start == 22h + 30min);
    CHECK(plan.tiers[0].rate == core::Rate{500'000, 64'000});
    CHECK(parse_plan_file("quota = 1000\n[cycle]\nkind = \"every_n_days\"\ndays = 7\n", "x.toml")
              .quota_bytes == 1000);
}

TEST_CASE("bad plan files name file:line:key") {
    struct Row {
        const char* what;
        const char* file;
        const char* text;
        const char* expected;  // substring of what()
        std::uint32_t line;
        const char* key;
    };
    const Row rows[] = {
        {"quota unit", "p/home.toml", "description = \"x\"\nquota = \"100 GBs\"\n",
         "p/home.toml:2: quota: expected a size", 2, "quota"},
        {"quota negative", "home.toml", "quota = -1\n[cycle]\nkind = \"monthly\"\n",
         "home.toml:1: quota: expected a size", 1, "quota"},
        {"rate unit", "home.toml",
         "quota = \"1 GB\"\n[cycle]\nkind = \"monthly\"\n[[tiers]]\nat_percent = 100\n"
         "action = \"throttle\"\ndown = \"2 Mbps\"\nup = \"1 Mbit/s\"\n",
         "home.toml:7: tiers[0].down: expected a rate", 7, "tiers[0].down"},
        {"rate too low (validator)", "home.toml",
         "quota = \"1 GB\"\n[cycle]\nkind = \"monthly\"\n[[tiers]]\nat_percent = 100\n"
         "action = \"throttle\"\ndown = \"2 Mbit/s\"\nup = \"10 bit/s\"\n",
         "home.toml:8: tiers[0].up: expected a rate from 1 kbit/s", 8, "tiers[0].up"},
        {"unknown key", "home.toml",
         "quota = \"1 GB\"\ncolour = \"red\"\n[cycle]\nkind = \"monthly\"\n",
         "home.toml:2: colour: unknown key", 2, "colour"},
        {"JSON spelling in a file", "home.toml", "quota_bytes = 5\n",
         "home.toml:1: quota_bytes: unknown key", 1, "quota_bytes"},
        {"unknown zone", "home.toml",
         "quota = \"1 GB\"\n[cycle]\nkind = \"monthly\"\ntime_zone = \"Europe/Atlantis\"\n",
         "home.toml:4: cycle.time_zone: unknown time zone", 4, "cycle.time_zone"},
        {"tiers not ascending", "home.toml",
         "quota = \"1 GB\"\n[cycle]\nkind = \"monthly\"\n[[tiers]]\nat_percent = 100\n"
         "action = \"block\"\n[[tiers]]\nat_percent = 50\naction = \"block\"\n",
         "home.toml:8: tiers[1].at_percent", 8, "tiers[1].at_percent"},
        {"missing cycle", "home.toml", "quota = \"1 GB\"\n", "home.toml:1: cycle: missing", 1,
         "cycle"},
        {"window time", "home.toml",
         "quota = \"1 GB\"\nfree_windows = [{ start = \"25:00\", end = \"07:00\" }]\n"
         "[cycle]\nkind = \"monthly\"\n",
         "home.toml:2: free_windows[0].start", 2, "free_windows[0].start"},
        {"TOML syntax", "home.toml", "quota = \"1 GB\"\n[cycle\nkind = 1\n", "home.toml:2:", 2, ""},
        {"name differs", "home.toml", "name = \"other\"\n[cycle]\nkind = \"monthly\"\n",
         "home.toml:1: name: \"other\" differs", 1, "name"},
        {"file name no plan name", "Home Plan.toml", "[cycle]\nkind = \"monthly\"\n",
         "Home Plan.toml:1: name:", 1, "name"},
        {"a date", "home.toml", "[cycle]\nkind = \"monthly\"\ntime = 2026-01-01\n",
         "home.toml:3: cycle.time: unexpected date", 3, "cycle.time"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.what);
        try {
            parse_plan_file(row.text, row.file);
            FAIL("accepted");
        } catch (const PlanFileError& e) {
            CAPTURE(e.what());
            CHECK(std::string(e.what()).find(row.expected) != std::string::npos);
            CHECK(e.line == row.line);
            CHECK(e.key == row.key);
            CHECK(e.file == row.file);
        }
    }
}

TEST_CASE("a directory with one bad file is rejected as a whole") {
    TempDir dir;
    dir.write("good.toml", kGood);
    dir.write("README.md", "not a plan");
    dir.write(".hidden.toml", "garbage [");
    dir.write("good.toml~", "garbage [");
    std::filesystem::create_directory(dir.path() / "sub.toml");
    const auto set = load_plan_dir(dir.path());
    CHECK(set.size() == 1);
    CHECK(set.find("good") != nullptr);

    dir.write("bad.toml", "quota = \"10 GB\"\n[cycle]\nkind = \"monthly\"\nday = 32\n");
    try {
        load_plan_dir(dir.path());
        FAIL("accepted");
    } catch (const PlanFileError& e) {
        CHECK(e.file == (dir.path() / "bad.toml").string());
        CHECK(e.line == 4);
        CHECK(e.key == "cycle.day");
    }
}

TEST_CASE("a missing directory is an error, an empty one is not") {
    TempDir dir;
    CHECK(load_plan_dir(dir.path()).empty());
    CHECK_THROWS_AS(load_plan_dir(dir.path() / "nosuch"), PlanFileError);
}

TEST_CASE("the example in policies/README.md is a valid plan file") {
    std::ifstream in(std::filesystem::path(CTQUOTA_POLICIES_DIR) / "README.md");
    std::stringstream buf;
    buf << in.rdbuf();
    const auto text = buf.str();
    const auto begin = text.find("```toml\n");
    REQUIRE(begin != std::string::npos);
    const auto end = text.find("```", begin + 8);
    REQUIRE(end != std::string::npos);
    const auto plan = parse_plan_file(text.substr(begin + 8, end - begin - 8), "example.toml");
    CHECK(plan.tiers.size() == 2);
    CHECK(plan.always_allowed.size() == 1);
}
