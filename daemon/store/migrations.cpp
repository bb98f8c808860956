#include "store/migrations.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <set>
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

// "NNN_name.sql": digits, an underscore, then letters, digits, '_' or '-'.
std::optional<Migration> parse_name(const std::filesystem::path& path) {
    const auto stem = path.stem().string();
    int version = 0;
    const auto* end = stem.data() + stem.size();
    const auto [ptr, ec] = std::from_chars(stem.data(), end, version);
    if (ec != std::errc{} || ptr == stem.data() || ptr == end || *ptr != '_' || version <= 0) {
        return std::nullopt;
    }
    std::string name(ptr + 1, end);
    const bool name_ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    if (!name_ok) {
        return std::nullopt;
    }
    return Migration{version, std::move(name), path};
}

std::map<int, Migration> list_migrations(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
        throw DatabaseError("schema directory '" + dir.string() + "' does not exist");
    }
    std::map<int, Migration> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const auto file = entry.path().filename().string();
        // Hidden files (editor locks) and anything not ending in .sql are not migrations.
        if (file.starts_with('.') || entry.path().extension() != ".sql") {
            continue;
        }
        auto m = parse_name(entry.path());
        if (!m) {
            throw DatabaseError("schema file '" + entry.path().string() +
                                "' is not named NNN_name.sql (a positive number, '_', then "
                                "letters, digits, '_' or '-')");
        }
        if (const auto it = out.find(m->version); it != out.end()) {
            throw DatabaseError("schema files '" + it->second.path.string() + "' and '" +
                                entry.path().string() + "' share version " +
                                std::to_string(m->version));
        }
        out.emplace(m->version, std::move(*m));
    }
    if (out.empty()) {
        throw DatabaseError("schema directory '" + dir.string() + "' holds no NNN_name.sql files");
    }
    return out;
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    if (!in) {
        throw DatabaseError("cannot read schema file '" + path.string() + "'");
    }
    return buf.str();
}

// Under the lock: creates the bookkeeping table if needed, returns the applied versions.
std::set<int> lock_and_read_applied(pqxx::work& txn) {
    // Transaction-scoped: released by COMMIT or ROLLBACK, even if the process dies.
    txn.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
    txn.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version    integer PRIMARY KEY,"
        " name       text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())");
    std::set<int> applied;
    for (const auto& row : txn.exec("SELECT version FROM schema_migrations")) {
        applied.insert(row[0].as<int>());
    }
    return applied;
}

}  // namespace

int apply_migrations(Database& db, const std::filesystem::path& schema_dir) {
    const auto migrations = list_migrations(schema_dir);
    int applied_now = 0;
    bool warned = false;
    // One transaction per migration, each taking the lock again: a second
    // process waits, then sees what the first one recorded and skips it.
    while (true) {
        const Migration* next = nullptr;
        try {
            pqxx::work txn(db.connection());
            const auto applied = lock_and_read_applied(txn);
            for (const auto& [version, m] : migrations) {
                if (!applied.contains(version)) {
                    next = &m;
                    break;
                }
            }
            if (!warned) {
                warned = true;
                for (const int v : applied) {
                    if (!migrations.contains(v)) {
                        spdlog::warn(
                            "database has schema migration {} which {} lacks (newer ctquota?)", v,
                            schema_dir.string());
                    }
                }
            }
            if (next == nullptr) {
                txn.commit();
                return applied_now;
            }
            spdlog::info("applying schema migration {} ({})", next->version, next->name);
            txn.exec(read_file(next->path));
            txn.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                            next->version, next->name);
            txn.commit();
            ++applied_now;
        } catch (...) {
            db.fail(next ? "schema migration " + next->path.filename().string()
                         : std::string("schema migrations"));
        }
    }
}

}  // namespace ctquota::store
