#pragma once
// Test fixture for the db suite: a scratch database per test case, created
// from the server named by CTQUOTA_TEST_DB_URL and dropped afterwards, plus
// small builders for batches and a side connection for assertions.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include <pqxx/pqxx>

#include "core/accounting.hpp"
#include "core/calendar.hpp"
#include "store/database.hpp"

namespace ctquota::dbtest {

// The libpq URL of the test server; FAILs the test with instructions when unset.
std::string base_url();
// `url` pointing at database `dbname` instead (URI or key=value form).
std::string with_dbname(const std::string& url, const std::string& dbname);
// The schema shipped with ctquota (schema/).
std::filesystem::path schema_dir();
// How many NNN_name.sql files schema/ holds.
int schema_file_count();

class ScratchDatabase {
  public:
    // A new, empty database; with `migrate`, the ctquota schema applied.
    explicit ScratchDatabase(bool migrate = true);
    ~ScratchDatabase();
    ScratchDatabase(const ScratchDatabase&) = delete;
    ScratchDatabase& operator=(const ScratchDatabase&) = delete;

    [[nodiscard]] const std::string& url() const { return url_; }
    [[nodiscard]] const std::string& name() const { return name_; }
    // The store's connection to it, shared by the stores a test builds.
    store::Database& db() { return *db_; }

    // Side channel for setting up and checking, on its own connection.
    pqxx::result query(const std::string& sql);
    std::int64_t scalar(const std::string& sql);
    void exec(const std::string& sql) { query(sql); }
    std::int64_t count(const std::string& table) { return scalar("SELECT count(*) FROM " + table); }

  private:
    std::string name_;
    std::string url_;
    std::unique_ptr<store::Database> db_;
    std::unique_ptr<pqxx::connection> side_;
};

// Now, on the same clock as the server (same host), truncated to microseconds
// as timestamptz stores it.
core::TimePoint now_us();
core::TimePoint current_month();  // start of the calendar month (UTC) containing now

core::Usage usage(std::uint64_t up_bytes, std::uint64_t down_bytes, std::uint64_t up_packets,
                  std::uint64_t down_packets);
// A batch crediting `u` to each subscriber in the current month and hour.
core::FlushBatch usage_batch(const std::vector<core::SubscriberId>& subscribers,
                             const core::Usage& u);
// A prefix the test wrote; fails the test case if it does not parse.
core::Prefix prefix(const char* text);

// Runs attempt(i, db) in `racers` threads at once, each with a connection of
// its own, and counts who got through and who got a store::ConflictError.
struct RaceResult {
    int won = 0;
    int conflicts = 0;
};
RaceResult race(const std::string& url, int racers,
                const std::function<void(int, store::Database&)>& attempt);

// A checkpoint entry for a made-up IPv4 flow number `n`.
core::CheckpointEntry flow_entry(std::uint32_t n, std::uint64_t orig_bytes,
                                 std::uint64_t reply_bytes);

}  // namespace ctquota::dbtest
