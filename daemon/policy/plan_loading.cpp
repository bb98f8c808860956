// PolicyEngine, part three: where plans come from. The plan files are
// mirrored into the plans table (source 'file'), then every stored plan
// (files' and the API's) is read back: the database is what all gateways
// and the API share. A bad plan file is fatal at start-up and refused on a
// reload (the plans in force stay).
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "core/plan_json.hpp"
#include "policy/plan_files.hpp"
#include "policy/policy_engine.hpp"
#include "store/plan_store.hpp"

namespace ctquota::policy {
namespace {

void mirror_files(store::Database& db, const std::filesystem::path& dir, bool fatal) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
        spdlog::warn(
            "policies.dir {} is not a directory: no plans from files (plans stored "
            "through the API still apply)",
            dir.string());
        return;
    }
    PlanSet set;
    try {
        set = load_plan_dir(dir);
    } catch (const PlanFileError& e) {
        if (fatal) {
            spdlog::critical("plan files rejected: {}", e.what());
            throw;
        }
        spdlog::error("plan files rejected, the plans in force stay: {}", e.what());
        return;
    }
    std::vector<store::PlanRecord> records;
    for (const auto& [name, entry] : set.entries) {
        store::PlanRecord r;
        r.name = name;
        r.definition = core::plan_to_json(entry.plan).dump();
        r.source = store::PlanSource::File;
        r.source_file = entry.file.string();
        records.push_back(std::move(r));
    }
    store::PlanStore(db).upsert_files(records);
    spdlog::info("plan files: {} plans loaded from {}", records.size(), dir.string());
}

}  // namespace

void PolicyEngine::load_plans(PlanReload from) {
    if (from != PlanReload::Stored) {
        mirror_files(db_, config_.dir, from == PlanReload::StartUp);
    }
    std::unordered_map<std::string, core::Plan> plans;
    for (const auto& r : store::PlanStore(db_).list()) {
        try {
            plans.emplace(r.name,
                          core::plan_from_json(nlohmann::json::parse(r.definition), r.name));
        } catch (const std::exception& e) {
            // Refused by the validator of this build: keep the one in force, if any.
            spdlog::error("stored plan '{}' is invalid ({}); keeping the previous version", r.name,
                          e.what());
            if (auto it = plans_.find(r.name); it != plans_.end()) {
                plans.emplace(r.name, it->second);
            }
        }
    }
    plans_ = std::move(plans);
}

}  // namespace ctquota::policy
