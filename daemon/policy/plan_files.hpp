#pragma once
// Plan files: one `<plan>.toml` per plan in a directory (policies/). Parses
// the human units (quota = "100 GB", down = "2 Mbit/s", times "01:00"), turns
// the file into the JSON shape and validates it with core::plan_from_json, so
// files and the API share one validator. Every error names file:line:key; one
// bad file rejects the whole directory so the plans in force stay in force.
// Owns reading the files; never touches the database.

#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/plan.hpp"

namespace ctquota::policy {

class PlanFileError : public std::runtime_error {
  public:
    // what(): "file:line: key: message" (key and line left out when unknown).
    PlanFileError(std::string file_, std::uint32_t line_, std::string key_, std::string message_);
    std::string file;
    std::uint32_t line = 0;  // 0: not tied to a line (e.g. an unreadable file)
    std::string key;         // TOML spelling: "tiers[1].down", "quota"; empty for syntax errors
    std::string message;
};

// The plans of one directory, by name, with the file each came from.
struct PlanSet {
    struct Entry {
        core::Plan plan;
        std::filesystem::path file;
    };
    std::map<std::string, Entry, std::less<>> entries;

    [[nodiscard]] const core::Plan* find(std::string_view name) const;
    [[nodiscard]] const std::filesystem::path* source_file(std::string_view name) const;
    [[nodiscard]] std::size_t size() const { return entries.size(); }
    [[nodiscard]] bool empty() const { return entries.empty(); }
};

// Every regular `*.toml` in `dir` (hidden files and other extensions are
// skipped, so README.md may live beside them). Throws PlanFileError.
PlanSet load_plan_dir(const std::filesystem::path& dir);

// One file's text; the plan's name is the file name without ".toml" taken
// from `source` (a path). Throws PlanFileError naming `source`.
core::Plan parse_plan_file(std::string_view text, const std::string& source);

}  // namespace ctquota::policy
