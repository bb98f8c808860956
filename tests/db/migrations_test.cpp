#include <doctest/doctest.h>

#include <algorithm>
#include <barrier>
#include <filesystem>
#include <fstream>
#include <thread>

#include "db_fixture.hpp"
#include "store/migrations.hpp"

using namespace ctquota;
using ctquota::dbtest::ScratchDatabase;

namespace {

// A schema directory of our own making, removed afterwards.
struct TempSchema {
    std::filesystem::path dir;
    TempSchema() {
        char tmpl[] = "/tmp/ctquota-schema-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
    }
    ~TempSchema() { std::filesystem::remove_all(dir); }
    void write(const std::string& file, const std::string& sql) const {
        std::ofstream(dir / file) << sql;
    }
};

std::string rows(ScratchDatabase& s) {
    std::string out;
    for (const auto& r : s.query("SELECT version, name, applied_at::text FROM schema_migrations "
                                 "ORDER BY version")) {
        out += r[0].c_str() + std::string("|") + r[1].c_str() + "|" + r[2].c_str() + "\n";
    }
    return out;
}

std::string migration_error(ScratchDatabase& s, const std::filesystem::path& dir) {
    try {
        store::apply_migrations(s.db(), dir);
    } catch (const store::DatabaseError& e) {
        return e.what();
    }
    FAIL("apply_migrations should have failed for " << dir);
    return {};
}

}  // namespace

TEST_CASE("migrations apply in order, are recorded, and a second run applies nothing") {
    ScratchDatabase scratch(false);
    const int files = dbtest::schema_file_count();
    REQUIRE(files >= 3);
    CHECK(store::apply_migrations(scratch.db(), dbtest::schema_dir()) == files);
    CHECK(scratch.count("schema_migrations") == files);
    // The highest number recorded is the highest file's (numbers are handed
    // out to parallel branches, so there may be gaps until they all land).
    int highest = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dbtest::schema_dir())) {
        highest = std::max(highest, std::stoi(entry.path().filename().string().substr(0, 3)));
    }
    CHECK(scratch.scalar("SELECT max(version) FROM schema_migrations") == highest);
    CHECK(scratch.query("SELECT name FROM schema_migrations WHERE version = 1")[0][0].c_str() ==
          std::string("initial"));
    const auto before = rows(scratch);

    CHECK(store::apply_migrations(scratch.db(), dbtest::schema_dir()) == 0);
    CHECK(rows(scratch) == before);
    // The tables are really there.
    for (const char* table : {"subscribers", "subscriber_bindings", "usage_period", "usage_hourly",
                              "usage_unattributed", "ledger_checkpoint", "gateway_flush"}) {
        CAPTURE(table);
        CHECK(scratch.count(table) == 0);
    }
    CHECK(scratch
              .query("SELECT attstorage FROM pg_attribute WHERE attrelid = "
                     "'ledger_checkpoint'::regclass AND attname = 'data'")[0][0]
              .c_str() == std::string("e"));
}

TEST_CASE("concurrent apply_migrations: every caller succeeds, each migration applies once") {
    ScratchDatabase scratch(false);
    constexpr int kCallers = 6;
    std::vector<int> applied(kCallers, -1);
    std::vector<std::string> errors(kCallers);
    std::barrier start(kCallers);
    std::vector<std::thread> threads;
    for (int i = 0; i < kCallers; ++i) {
        threads.emplace_back([&, i] {
            store::Database db(scratch.url());
            db.connection();  // connect first, so the calls really overlap
            start.arrive_and_wait();
            try {
                applied[i] = store::apply_migrations(db, dbtest::schema_dir());
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    int total = 0;
    for (int i = 0; i < kCallers; ++i) {
        CAPTURE(i);
        CHECK(errors[i] == "");
        CHECK(applied[i] >= 0);
        total += applied[i];
    }
    CHECK(total == dbtest::schema_file_count());
    CHECK(scratch.count("schema_migrations") == dbtest::schema_file_count());
}

TEST_CASE("a failing migration rolls back alone; earlier ones stay; a fixed one applies") {
    ScratchDatabase scratch(false);
    TempSchema schema;
    schema.write("001_first.sql", "CREATE TABLE first (id int);");
    schema.write("002_second.sql", "CREATE TABLE second (id int);\nSELEC broken;");
    schema.write("README.md", "not a migration");
    schema.write(".#001_first.sql", "editor lock file, ignored");

    const auto message = migration_error(scratch, schema.dir);
    CHECK(message.find("002_second.sql") != std::string::npos);
    CHECK(message.find("syntax error") != std::string::npos);
    CHECK(scratch.count("schema_migrations") == 1);
    CHECK(scratch.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'first'") == 1);
    CHECK(scratch.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'second'") == 0);

    schema.write("002_second.sql", "CREATE TABLE second (id int);");
    CHECK(store::apply_migrations(scratch.db(), schema.dir) == 1);
    CHECK(scratch.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'second'") == 1);
    CHECK(scratch.query("SELECT name FROM schema_migrations WHERE version = 2")[0][0].c_str() ==
          std::string("second"));
}

TEST_CASE("badly named schema files are refused before anything is applied") {
    ScratchDatabase scratch(false);
    struct Row {
        const char* description;
        const char* file;
        const char* expected;
    };
    const Row rows_table[] = {
        {"no number", "initial.sql", "is not named NNN_name.sql"},
        {"no underscore", "002.sql", "is not named NNN_name.sql"},
        {"dash instead of underscore", "002-more.sql", "is not named NNN_name.sql"},
        {"version zero", "000_zero.sql", "is not named NNN_name.sql"},
        {"space in the name", "002_two words.sql", "is not named NNN_name.sql"},
        {"duplicate version", "1_again.sql", "share version 1"},
    };
    for (const auto& row : rows_table) {
        CAPTURE(row.description);
        TempSchema schema;
        schema.write("001_first.sql", "CREATE TABLE first (id int);");
        schema.write(row.file, "CREATE TABLE bad (id int);");
        const auto message = migration_error(scratch, schema.dir);
        CHECK(message.find(row.expected) != std::string::npos);
        CHECK(message.find(row.file) != std::string::npos);
        CHECK(scratch.scalar("SELECT count(*) FROM pg_tables WHERE tablename IN "
                             "('first', 'bad', 'schema_migrations')") == 0);
    }
    CHECK(migration_error(scratch, "/nonexistent/schema").find("does not exist") !=
          std::string::npos);
    TempSchema empty;
    CHECK(migration_error(scratch, empty.dir).find("no NNN_name.sql") != std::string::npos);
}
