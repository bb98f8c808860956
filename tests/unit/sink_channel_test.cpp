// sinks::SinkChannel with hand-written fake sinks: push never waits for the
// sink, a full queue drops and counts, a failing write is retried with the
// same records, and stop() writes what is queued or counts it as dropped.
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "sinks/sink_channel.hpp"

using namespace ctquota;
using namespace ctquota::sinks;
using namespace std::chrono;

namespace {

core::RecordBatch batch(std::size_t n, std::uint64_t first_id = 0) {
    auto v = std::make_shared<std::vector<core::FlowRecord>>(n);
    for (std::size_t i = 0; i < n; ++i) {
        (*v)[i].flow_id = first_id + i;
    }
    return v;
}

// Blocks in write() until released; fails the first `failures` writes.
struct FakeSink final : RecordSink {
    struct Shared {
        std::mutex mu;
        std::condition_variable cv;
        bool blocked = false;
        int failures = 0;
        std::vector<std::uint64_t> written;  // flow ids, in order
        int writes = 0;
        int ticks = 0;
    };
    explicit FakeSink(Shared& s) : s_(s) {}
    void write(const std::vector<core::RecordBatch>& batches) override {
        std::unique_lock lock(s_.mu);
        ++s_.writes;
        s_.cv.wait(lock, [this] { return !s_.blocked; });
        if (s_.failures > 0) {
            --s_.failures;
            throw std::runtime_error("database is down");
        }
        for (const auto& b : batches) {
            for (const auto& r : *b) {
                s_.written.push_back(r.flow_id);
            }
        }
        s_.cv.notify_all();
    }
    void tick() override {
        std::lock_guard lock(s_.mu);
        ++s_.ticks;
        s_.cv.notify_all();
    }
    Shared& s_;
};

ChannelOptions fast(std::size_t capacity) {
    ChannelOptions o;
    o.capacity = capacity;
    o.batch_records = 1;
    o.linger = milliseconds(1);
    o.tick = milliseconds(10);
    o.retry_max = milliseconds(20);
    return o;
}

template <typename Pred>
bool wait_for(FakeSink::Shared& s, Pred pred) {
    std::unique_lock lock(s.mu);
    return s.cv.wait_for(lock, seconds(10), pred);
}

}  // namespace

TEST_CASE("a stuck sink: push returns at once, the full queue drops and counts") {
    FakeSink::Shared shared;
    shared.blocked = true;
    metrics::SinkMetrics m("test");
    SinkChannel channel(std::make_unique<FakeSink>(shared), fast(100), m);
    channel.start();
    CHECK(channel.push(batch(10, 0)));
    REQUIRE(wait_for(shared, [&] { return shared.writes == 1; }));  // taken, stuck in write
    const auto t0 = steady_clock::now();
    int accepted = 0;
    for (int i = 0; i < 50; ++i) {
        accepted += channel.push(batch(10, 100 + 10 * i)) ? 1 : 0;
    }
    CHECK(steady_clock::now() - t0 < milliseconds(500));  // never waited for the sink
    CHECK(accepted == 10);                                // 100 records of room
    CHECK(m.dropped == 400);
    CHECK(m.queued == 100);
    {
        std::lock_guard lock(shared.mu);
        shared.blocked = false;
    }
    shared.cv.notify_all();
    REQUIRE(wait_for(shared, [&] { return shared.written.size() == 110; }));
    channel.stop(seconds(1));
    CHECK(m.written == 110);
    CHECK(m.queued == 0);
}

TEST_CASE("a backlog is written about batch_records at a time") {
    FakeSink::Shared shared;
    shared.blocked = true;
    metrics::SinkMetrics m("test");
    auto options = fast(1000);
    options.batch_records = 25;
    SinkChannel channel(std::make_unique<FakeSink>(shared), options, m);
    channel.start();
    channel.push(batch(10, 0));
    REQUIRE(wait_for(shared, [&] { return shared.writes == 1; }));  // stuck with the first
    for (int i = 1; i <= 9; ++i) {
        channel.push(batch(10, 10 * i));
    }
    {
        std::lock_guard lock(shared.mu);
        shared.blocked = false;
    }
    shared.cv.notify_all();
    REQUIRE(wait_for(shared, [&] { return shared.written.size() == 100; }));
    channel.stop(seconds(1));
    // The first batch alone, then the 90 queued ones two batches (20 records) a write.
    CHECK(shared.writes == 1 + 5);
    CHECK(m.written == 100);
}

TEST_CASE("a failing write is retried with the same records, in order") {
    FakeSink::Shared shared;
    shared.failures = 3;
    metrics::SinkMetrics m("test");
    SinkChannel channel(std::make_unique<FakeSink>(shared), fast(1000), m);
    channel.start();
    channel.push(batch(5, 0));
    REQUIRE(wait_for(shared, [&] { return shared.written.size() == 5; }));
    channel.push(batch(5, 5));
    REQUIRE(wait_for(shared, [&] { return shared.written.size() == 10; }));
    channel.stop(seconds(1));
    CHECK(shared.written == std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK(m.errors == 3);
    CHECK(m.written == 10);
    CHECK(m.dropped == 0);
}

TEST_CASE("ticks come without records; stop() counts what it could not write") {
    FakeSink::Shared shared;
    metrics::SinkMetrics m("test");
    SinkChannel channel(std::make_unique<FakeSink>(shared), fast(1000), m);
    channel.start();
    REQUIRE(wait_for(shared, [&] { return shared.ticks >= 3; }));
    {
        std::lock_guard lock(shared.mu);
        shared.failures = 1000;  // the database never comes back
    }
    channel.push(batch(7));
    channel.stop(milliseconds(100));
    CHECK(m.dropped == 7);
    CHECK(m.written == 0);
    CHECK_FALSE(channel.push(batch(1)));  // stopped: refused and counted
    CHECK(m.dropped == 8);
}
