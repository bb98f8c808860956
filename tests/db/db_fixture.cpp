#include "db_fixture.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/clock.hpp"
#include "store/migrations.hpp"
#include "store/subscriber_store.hpp"

namespace ctquota::dbtest {
namespace {

// The store logs every migration; keep the suite's output to what matters.
// CTQUOTA_TEST_LOG=debug (or info, ...) shows it all.
const bool quiet_logs = [] {
    const char* level = std::getenv("CTQUOTA_TEST_LOG");
    spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::warn);
    return true;
}();

std::string unique_name() {
    static std::atomic<int> counter{0};
    static const auto salt = std::random_device{}();
    char buf[64];
    std::snprintf(buf, sizeof buf, "ctquota_t_%d_%d_%08x", static_cast<int>(getpid()),
                  counter.fetch_add(1), salt & 0xffffffffu);
    return buf;
}

// CREATE/DROP DATABASE cannot run inside a transaction block.
void on_server(const std::string& sql) {
    pqxx::connection conn(base_url());
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
}

}  // namespace

std::string base_url() {
    const char* url = std::getenv("CTQUOTA_TEST_DB_URL");
    if (url == nullptr || *url == '\0') {
        FAIL(
            "CTQUOTA_TEST_DB_URL is not set. The db suite needs a PostgreSQL server: run "
            "tests/run.sh (as root), or start one yourself with\n"
            "  export CTQUOTA_TEST_DB_URL=$(deploy/pg-throwaway.sh start $(mktemp -d) 54401)\n"
            "and stop it afterwards with deploy/pg-throwaway.sh stop DIR.");
    }
    return url;
}

std::string with_dbname(const std::string& url, const std::string& dbname) {
    for (const char* scheme : {"postgresql://", "postgres://"}) {
        if (url.starts_with(scheme)) {
            const auto authority = std::string(scheme).size();
            const auto path = url.find_first_of("/?", authority);
            if (path == std::string::npos) {
                return url + "/" + dbname;
            }
            if (url[path] == '?') {
                return url.substr(0, path) + "/" + dbname + url.substr(path);
            }
            const auto query = url.find('?', path);
            return url.substr(0, path) + "/" + dbname +
                   (query == std::string::npos ? "" : url.substr(query));
        }
    }
    return url + " dbname='" + dbname + "'";  // key=value form: the last one wins
}

std::filesystem::path schema_dir() {
    return CTQUOTA_SCHEMA_DIR;
}

int schema_file_count() {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(schema_dir())) {
        n += e.path().extension() == ".sql" ? 1 : 0;
    }
    return n;
}

ScratchDatabase::ScratchDatabase(bool migrate) : name_(unique_name()) {
    const auto base = base_url();
    on_server("CREATE DATABASE " + name_);
    url_ = with_dbname(base, name_);
    db_ = std::make_unique<store::Database>(url_);
    side_ = std::make_unique<pqxx::connection>(url_);
    if (migrate) {
        REQUIRE(store::apply_migrations(*db_, schema_dir()) == schema_file_count());
    }
}

ScratchDatabase::~ScratchDatabase() {
    db_.reset();
    side_.reset();
    try {
        on_server("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "could not drop scratch database %s: %s\n", name_.c_str(), e.what());
    }
}

pqxx::result ScratchDatabase::query(const std::string& sql) {
    pqxx::work tx(*side_);
    auto r = tx.exec(sql);
    tx.commit();
    return r;
}

std::int64_t ScratchDatabase::scalar(const std::string& sql) {
    const auto r = query(sql);
    REQUIRE(r.size() == 1);
    return r[0][0].as<std::int64_t>();
}

core::TimePoint now_us() {
    return std::chrono::floor<std::chrono::microseconds>(core::SystemClock{}.now());
}

core::TimePoint current_month() {
    return core::month_start_utc(core::SystemClock{}.now());
}

core::Usage usage(std::uint64_t up_bytes, std::uint64_t down_bytes, std::uint64_t up_packets,
                  std::uint64_t down_packets) {
    core::Usage u;
    u.up = {up_bytes, up_packets};
    u.down = {down_bytes, down_packets};
    return u;
}

core::FlushBatch usage_batch(const std::vector<core::SubscriberId>& subscribers,
                             const core::Usage& u) {
    const auto now = core::SystemClock{}.now();
    core::FlushBatch b;
    for (const auto s : subscribers) {
        const core::Period month{core::month_start_utc(now), core::next_month_start_utc(now)};
        b.usage.periods.push_back(core::period_usage(s, month, u));
        b.usage.hours.push_back(core::hour_usage(s, core::hour_start(now), month, u));
    }
    return b;
}

core::CheckpointEntry flow_entry(std::uint32_t n, std::uint64_t orig_bytes,
                                 std::uint64_t reply_bytes) {
    core::FlowKey key;
    key.id = n;
    key.orig.src = core::IpAddress::v4(0x64400000u + n);  // 100.64.x.y
    key.orig.dst = core::IpAddress::v4(0x08080808u);
    key.orig.src_port = static_cast<std::uint16_t>(1024 + n % 60000);
    key.orig.dst_port = 443;
    key.orig.l4proto = 6;
    key.start_ns = 1'700'000'000'000'000'000ull + n;
    return core::CheckpointEntry{
        key, {orig_bytes, orig_bytes / 1000 + 1}, {reply_bytes, reply_bytes / 1000 + 1}};
}

core::Prefix prefix(const char* text) {
    auto p = core::Prefix::parse(text);
    REQUIRE(p.has_value());
    return *p;
}

RaceResult race(const std::string& url, int racers,
                const std::function<void(int, store::Database&)>& attempt) {
    RaceResult result;
    std::mutex mu;
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(racers));
    for (int i = 0; i < racers; ++i) {
        threads.emplace_back([&, i] {
            store::Database db(url);
            try {
                attempt(i, db);
                std::lock_guard lock(mu);
                ++result.won;
            } catch (const store::ConflictError&) {
                std::lock_guard lock(mu);
                ++result.conflicts;
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    return result;
}

}  // namespace ctquota::dbtest
