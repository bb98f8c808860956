#include "store/plan_store.hpp"

#include <pqxx/pqxx>
#include <stdexcept>

#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

constexpr const char* kCheckViolation = "23514";
constexpr const char* kForeignKeyViolation = "23503";
constexpr const char* kInvalidJson = "22P02";

std::string columns() {
    return "name, definition::text, source, source_file, " + micros_of("updated_at");
}

PlanRecord record_of(const pqxx::row& r) {
    PlanRecord p;
    p.name = r[0].as<std::string>();
    p.definition = r[1].as<std::string>();
    p.source = r[2].as<std::string>() == "file" ? PlanSource::File : PlanSource::Api;
    if (!r[3].is_null()) {
        p.source_file = r[3].as<std::string>();
    }
    p.updated_at = from_micros(r[4].as<std::int64_t>());
    return p;
}

// The schema's CHECKs and jsonb parsing refuse bad input; say so as invalid_argument.
template <typename Fn>
auto refusing_bad_input(const std::string& name, Fn&& fn) {
    try {
        return fn();
    } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() == kCheckViolation || e.sqlstate() == kInvalidJson) {
            throw std::invalid_argument("plan '" + name +
                                        "': the name must match [a-z0-9][a-z0-9._-]{0,62} and "
                                        "the definition must be a JSON object");
        }
        throw;
    }
}

PlanStore::Upsert upsert_in(pqxx::work& txn, const std::string& name, const std::string& definition,
                            PlanSource source, const std::optional<std::string>& source_file) {
    const bool from_file = source == PlanSource::File;
    // xmax = 0 only on a freshly inserted row version.
    const auto rows = refusing_bad_input(name, [&] {
        return txn.exec_params(
            "INSERT INTO plans (name, definition, source, source_file, updated_at) "
            "VALUES ($1, $2::jsonb, $3, $4, now()) "
            "ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, "
            "  source = EXCLUDED.source, source_file = EXCLUDED.source_file, updated_at = now() "
            "  WHERE $5 OR plans.source = 'api' "
            "RETURNING (xmax = 0)",
            name, definition, to_string(source),
            from_file ? source_file : std::optional<std::string>(), from_file);
    });
    if (rows.empty()) {
        const auto held = txn.exec_params(
            "SELECT coalesce(source_file, '(unknown file)') FROM plans WHERE name = $1", name);
        throw PlanFromFileError(name,
                                held.empty() ? "(unknown file)" : held[0][0].as<std::string>());
    }
    return rows[0][0].as<bool>() ? PlanStore::Upsert::Created : PlanStore::Upsert::Updated;
}

}  // namespace

const char* to_string(PlanSource source) {
    return source == PlanSource::File ? "file" : "api";
}

std::vector<PlanRecord> PlanStore::list() {
    return in_transaction(db_, "listing plans", [&](pqxx::work& txn) {
        std::vector<PlanRecord> out;
        for (const auto& r : txn.exec("SELECT " + columns() + " FROM plans ORDER BY name")) {
            out.push_back(record_of(r));
        }
        return out;
    });
}

std::optional<PlanRecord> PlanStore::get(const std::string& name) {
    return in_transaction(db_, "reading a plan", [&](pqxx::work& txn) -> std::optional<PlanRecord> {
        const auto rows =
            txn.exec_params("SELECT " + columns() + " FROM plans WHERE name = $1", name);
        if (rows.empty()) {
            return std::nullopt;
        }
        return record_of(rows[0]);
    });
}

PlanStore::Upsert PlanStore::upsert(const std::string& name, const std::string& definition_json,
                                    PlanSource source,
                                    const std::optional<std::string>& source_file) {
    return in_transaction(db_, "writing a plan", [&](pqxx::work& txn) {
        return upsert_in(txn, name, definition_json, source, source_file);
    });
}

void PlanStore::upsert_files(const std::vector<PlanRecord>& plans) {
    in_transaction(db_, "mirroring plan files", [&](pqxx::work& txn) {
        for (const auto& p : plans) {
            upsert_in(txn, p.name, p.definition, PlanSource::File, p.source_file);
        }
        return 0;
    });
}

bool PlanStore::assign(const std::string& external_id, const std::optional<std::string>& plan) {
    return in_transaction(db_, "assigning a plan", [&](pqxx::work& txn) {
        try {
            const auto rows = txn.exec_params(
                "UPDATE subscribers SET plan = $2 WHERE external_id = $1 AND removed_at IS NULL "
                "RETURNING id",
                external_id, plan);
            return !rows.empty();
        } catch (const pqxx::sql_error& e) {
            if (e.sqlstate() == kForeignKeyViolation) {
                throw std::invalid_argument("there is no plan '" + plan.value_or("") + "'");
            }
            throw;
        }
    });
}

}  // namespace ctquota::store
