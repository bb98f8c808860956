#pragma once
// Plans (schema/006_policies.sql) and which plan each subscriber is on. The
// store keeps a plan's definition as JSON text and never interprets it:
// parsing and validation are core/ (plan_json) and api/'s job. Plans mirrored
// from policies/*.toml have source "file" and cannot be changed through the API.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "store/database.hpp"

namespace ctquota::store {

enum class PlanSource : std::uint8_t { File, Api };

struct PlanRecord {
    std::string name;
    std::string definition;  // JSON object text (as jsonb gives it back: keys reordered)
    PlanSource source = PlanSource::Api;
    std::optional<std::string> source_file;  // File only: the file it came from
    core::TimePoint updated_at{};
};

// PUT of a plan that a file defines: the message names the file.
class PlanFromFileError : public ConflictError {
  public:
    PlanFromFileError(const std::string& name, const std::string& file)
        : ConflictError("plan '" + name + "' is defined by the file " + file +
                        "; edit that file instead (the API may change only plans it created)"),
          file_(file) {}
    [[nodiscard]] const std::string& file() const { return file_; }

  private:
    std::string file_;
};

class PlanStore {
  public:
    explicit PlanStore(Database& db) : db_(db) {}

    std::vector<PlanRecord> list();  // by name
    std::optional<PlanRecord> get(const std::string& name);

    enum class Upsert : std::uint8_t { Created, Updated };
    // Source Api: creates or replaces an API plan; throws PlanFromFileError when
    // the stored plan's source is File. Source File: creates or replaces
    // whatever is stored (the plan files win), with `source_file` recorded.
    // Throws std::invalid_argument for a name the schema refuses or a
    // definition that is not a JSON object.
    Upsert upsert(const std::string& name, const std::string& definition_json, PlanSource source,
                  const std::optional<std::string>& source_file = std::nullopt);
    // Mirrors a loaded plan directory in one transaction (every record File).
    void upsert_files(const std::vector<PlanRecord>& plans);

    // Puts an active subscriber on `plan` (nullopt: no plan = unlimited).
    // false when there is no active subscriber `external_id`; throws
    // std::invalid_argument when the plan does not exist.
    bool assign(const std::string& external_id, const std::optional<std::string>& plan);

  private:
    Database& db_;
};

const char* to_string(PlanSource source);

}  // namespace ctquota::store
