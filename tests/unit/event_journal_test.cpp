// The event journal against real files in a scratch directory, and the
// sample codec it writes with.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "core/sample_codec.hpp"
#include "runtime/event_journal.hpp"
#include "test_helpers.hpp"

using namespace ctquota;
using namespace ctquota::test;
namespace fs = std::filesystem;

namespace {

core::FlowSample event(std::uint32_t i) {
    auto s = destroy(
        flow(i, i % 3 == 0 ? "2001:db8:0:1::1" : "100.64.1.1", static_cast<std::uint16_t>(i),
             i % 3 == 0 ? "2001:db8:ffff::2" : "198.18.0.2", 1000 + i),
        100 + i, 1 + i, 200 + i, 2 + i);
    s.zone = static_cast<std::uint16_t>(i % 5);
    s.mark = i * 7;
    s.stop_ns = 5000 + i;
    s.as_of_ns = 1'800'000'000'000'000'000 + i;
    return s;
}

bool same(const core::FlowSample& a, const core::FlowSample& b) {
    return a.kind == b.kind && a.id == b.id && a.zone == b.zone && a.mark == b.mark &&
           a.orig == b.orig && a.reply == b.reply && a.orig_counters == b.orig_counters &&
           a.reply_counters == b.reply_counters && a.start_ns == b.start_ns &&
           a.stop_ns == b.stop_ns && a.as_of_ns == b.as_of_ns;
}

struct Replayed {
    std::vector<core::FlowSample> samples;
    std::vector<std::uint64_t> positions;
};

Replayed replay(const runtime::EventJournal& j, std::uint64_t from, std::uint64_t to) {
    Replayed r;
    j.replay(from, to, [&](const core::FlowSample& s, std::uint64_t pos) {
        r.samples.push_back(s);
        r.positions.push_back(pos);
    });
    return r;
}

std::size_t segment_files(const fs::path& dir) {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
        n += e.path().extension() == ".seg" ? 1 : 0;
    }
    return n;
}

}  // namespace

TEST_CASE("a sample survives its encoding, IPv4 and IPv6, and damage is refused") {
    std::uint8_t buf[core::kMaxEncodedSample];
    for (std::uint32_t i : {1u, 3u}) {
        const auto s = event(i);
        const auto n = core::encode_sample(s, buf);
        CHECK(n <= core::kMaxEncodedSample);
        const auto back = core::decode_sample({buf, n});
        REQUIRE(back);
        CHECK(same(*back, s));
        CHECK_FALSE(core::decode_sample({buf, n - 1}));  // truncated
        buf[0] = 99;                                     // another version
        CHECK_FALSE(core::decode_sample({buf, n}));
    }
}

TEST_CASE("journal: what is appended is replayed, from any recorded position") {
    ScratchDir dir;
    runtime::EventJournal j(dir.path, 64 << 10);
    std::vector<core::FlowSample> in;
    std::vector<std::uint64_t> ends;
    for (std::uint32_t i = 0; i < 2000; ++i) {  // several segments of 64 KiB
        in.push_back(event(i));
        ends.push_back(j.append({&in.back(), 1}));
    }
    CHECK(j.end() == ends.back());
    CHECK(segment_files(dir.path) > 3);
    auto all = replay(j, 0, j.end());
    REQUIRE(all.samples.size() == in.size());
    CHECK(all.positions == ends);
    for (std::size_t i = 0; i < in.size(); ++i) {
        CHECK(same(all.samples[i], in[i]));
    }
    // From the position after record 1499: the last 500.
    auto tail = replay(j, ends[1499], j.end());
    REQUIRE(tail.samples.size() == 500);
    CHECK(same(tail.samples[0], in[1500]));
    // Up to a position: nothing after it.
    CHECK(replay(j, 0, ends[9]).samples.size() == 10);
}

TEST_CASE("journal: covered segments go, the rest replays, the one being written stays") {
    ScratchDir dir;
    runtime::EventJournal j(dir.path, 64 << 10);
    std::vector<std::uint64_t> ends;
    for (std::uint32_t i = 0; i < 2000; ++i) {
        const auto s = event(i);
        ends.push_back(j.append({&s, 1}));
    }
    const auto before = segment_files(dir.path);
    j.covered(ends[1499]);
    const auto after = segment_files(dir.path);
    CHECK(after < before);
    CHECK(after >= 1);
    const auto tail = replay(j, ends[1499], j.end());
    CHECK(tail.samples.size() == 500);
    j.covered(j.end());
    CHECK(segment_files(dir.path) == 1);  // the current segment
    const auto s = event(7);
    j.append({&s, 1});
    CHECK(replay(j, ends.back(), j.end()).samples.size() == 1);
}

TEST_CASE("journal: a new process finds the records of the last one and keeps numbering") {
    ScratchDir dir;
    std::uint64_t id = 0;
    std::uint64_t end = 0;
    {
        runtime::EventJournal j(dir.path, 64 << 10);
        id = j.id();
        for (std::uint32_t i = 0; i < 10; ++i) {
            const auto s = event(i);
            end = j.append({&s, 1});
        }
        // A second daemon on the same directory is refused.
        CHECK_THROWS_AS(runtime::EventJournal(dir.path, 64 << 10), runtime::JournalError);
    }
    runtime::EventJournal again(dir.path, 64 << 10);
    CHECK(again.id() == id);
    CHECK(again.run_start() >= end);
    const auto s = event(10);
    const auto e2 = again.append({&s, 1});
    auto all = replay(again, 0, e2);
    REQUIRE(all.samples.size() == 11);
    CHECK(same(all.samples[10], s));
    CHECK(replay(again, end, e2).samples.size() == 1);
}

TEST_CASE("journal: a record cut short or damaged ends its segment's replay") {
    ScratchDir dir;
    std::uint64_t end = 0;
    {
        runtime::EventJournal j(dir.path, 64 << 10);
        for (std::uint32_t i = 0; i < 5; ++i) {
            const auto s = event(i);
            end = j.append({&s, 1});
        }
    }
    // Damage the third record's payload (as a machine crash might): its
    // checksum no longer holds.
    fs::path seg;
    for (const auto& e : fs::directory_iterator(dir.path)) {
        if (e.path().extension() == ".seg") {
            seg = e.path();
        }
    }
    runtime::EventJournal probe(dir.path, 64 << 10);
    const auto records = replay(probe, 0, end);
    REQUIRE(records.positions.size() == 5);
    const int fd = ::open(seg.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    const std::uint8_t junk[4] = {0xde, 0xad, 0xbe, 0xef};
    CHECK(::pwrite(fd, junk, sizeof junk, static_cast<off_t>(records.positions[1] + 20)) == 4);
    ::close(fd);
    CHECK(replay(probe, 0, end).samples.size() == 2);
    CHECK(probe.stats().corrupt_tails.load() == 1);
}

TEST_CASE("journal: without its id file old segments cannot be matched and are dropped") {
    ScratchDir dir;
    std::uint64_t id = 0;
    {
        runtime::EventJournal j(dir.path, 64 << 10);
        id = j.id();
        const auto s = event(1);
        j.append({&s, 1});
    }
    fs::remove(dir.path / "id");
    runtime::EventJournal fresh(dir.path, 64 << 10);
    CHECK(fresh.id() != id);
    CHECK(fresh.run_start() == 0);
    CHECK(replay(fresh, 0, fresh.end()).samples.empty());
}
