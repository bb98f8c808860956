#include "store/migrations.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <sstream>

namespace ctquota::store {
namespace {

// Any constant works; it only has to be the same in every ctquotad.
constexpr long long kMigrationLock = 0x6374717561;  // "ctqua"

struct Migration {
    int version = 0;
    std::string name;
    std::filesystem::path path;
};

std::map<int, Migration> list_migrations(const std::filesystem::path& dir) {
    if (!std::filesystem::is_directory(dir)) {
        throw DatabaseError("schema directory '" + dir.string() + "' does not exist");
    }
    std::map<int, Migration> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const auto file = entry.path().filename().string();
        if (entry.path().extension() != ".sql") {
            continue;
        }
        int version = 0;
        const auto* end = file.data() + file.size();
        auto [ptr, ec] = std::from_chars(file.data(), end, version);
        if (ec != std::errc{} || ptr == file.data() || *ptr != '_' || version <= 0) {
            throw DatabaseError("migration '" + entry.path().string() +
                                "' is not named NNN_name.sql");
        }
        if (out.contains(version)) {
            throw DatabaseError("two migrations share version " + std::to_string(version) + ": " +
                                out[version].path.string() + " and " + entry.path().string());
        }
        out[version] = Migration{
            version,
            entry.path().stem().string().substr(static_cast<std::size_t>(ptr - file.data()) + 1),
            entry.path()};
    }
    return out;
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) {
        throw DatabaseError("cannot read migration " + path.string());
    }
    std::stringstream buf;
    buf << in.rdbuf();
    return buf.str();
}

}  // namespace

int apply_migrations(Database& db, const std::filesystem::path& schema_dir) {
    const auto migrations = list_migrations(schema_dir);
    try {
        auto& conn = db.connection();
        int applied = 0;
        pqxx::work txn(conn);
        // One transaction, serialised by an advisory lock: two daemons starting
        // at once neither both apply nor see a half-applied schema.
        txn.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
        txn.exec(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())");
        std::map<int, bool> done;
        for (const auto& row : txn.exec("SELECT version FROM schema_migrations")) {
            done[row[0].as<int>()] = true;
        }
        for (const auto& [version, m] : migrations) {
            if (done.contains(version)) {
                continue;
            }
            spdlog::info("applying migration {} ({})", version, m.name);
            txn.exec(read_file(m.path));
            txn.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                            version, m.name);
            ++applied;
        }
        txn.commit();
        return applied;
    } catch (const pqxx::broken_connection& e) {
        db.reset();
        throw DatabaseError(std::string("migrations: connection lost: ") + e.what());
    } catch (const pqxx::sql_error& e) {
        throw DatabaseError(std::string("migrations failed: ") + e.what());
    }
}

}  // namespace ctquota::store
