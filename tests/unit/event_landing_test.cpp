// The event landing against real datagram sockets and the journal's file:
// what a batch receive landed stays landed across a new process's mapping
// until it is released.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "conntrack/event_landing.hpp"
#include "runtime/event_journal.hpp"
#include "test_helpers.hpp"

using ctquota::conntrack::EventLanding;

namespace {

struct Pair {
    int fds[2] = {-1, -1};
    Pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, fds) == 0); }
    ~Pair() {
        ::close(fds[0]);
        ::close(fds[1]);
    }
    void send(const std::string& s) const {
        REQUIRE(::send(fds[1], s.data(), s.size(), 0) == static_cast<ssize_t>(s.size()));
    }
};

std::vector<std::string> contents(const EventLanding& landing) {
    std::vector<std::string> out;
    landing.for_each([&](const void* data, std::size_t len) {
        out.emplace_back(static_cast<const char*>(data), len);
    });
    return out;
}

}  // namespace

TEST_CASE("a landed batch survives the mapping that received it until released") {
    ctquota::test::ScratchDir dir;
    Pair pair;
    const std::vector<std::string> sent = {"first", std::string(3000, 'x'), "third"};
    {
        ctquota::runtime::EventJournal journal(dir.path);
        EventLanding landing(journal.landing_area(EventLanding::bytes_needed()));
        CHECK(landing.landed() == 0);
        for (const auto& s : sent) {
            pair.send(s);
        }
        CHECK(landing.receive(pair.fds[0]) == 3);
        CHECK(landing.landed() == 3);
        CHECK(contents(landing) == sent);
        // Nothing is released: the process "dies" with the batch landed.
    }
    char probe = 0;
    CHECK(::recv(pair.fds[0], &probe, 1, MSG_DONTWAIT) == -1);  // gone from the socket
    {
        ctquota::runtime::EventJournal journal(dir.path);
        EventLanding landing(journal.landing_area(EventLanding::bytes_needed()));
        CHECK(landing.landed() == 3);
        CHECK(contents(landing) == sent);
        landing.release();
        CHECK(landing.landed() == 0);
    }
    ctquota::runtime::EventJournal journal(dir.path);
    EventLanding landing(journal.landing_area(EventLanding::bytes_needed()));
    CHECK(landing.landed() == 0);
    CHECK(contents(landing).empty());
}

TEST_CASE("a landing receives at most its slots and reports an empty socket") {
    std::vector<std::byte> area(EventLanding::bytes_needed() + 4096);
    auto* aligned = reinterpret_cast<std::byte*>(
        (reinterpret_cast<std::uintptr_t>(area.data()) + 4095) & ~std::uintptr_t{4095});
    EventLanding landing({aligned, EventLanding::bytes_needed()});
    Pair pair;
    errno = 0;
    CHECK(landing.receive(pair.fds[0]) == -1);
    CHECK(errno == EAGAIN);
    for (std::size_t i = 0; i < EventLanding::kSlots + 2; ++i) {
        pair.send(std::to_string(i));
    }
    CHECK(landing.receive(pair.fds[0]) == static_cast<int>(EventLanding::kSlots));
    const auto first = contents(landing);
    REQUIRE(first.size() == EventLanding::kSlots);
    CHECK(first.front() == "0");
    CHECK(first.back() == std::to_string(EventLanding::kSlots - 1));
    landing.release();
    CHECK(landing.receive(pair.fds[0]) == 2);
    CHECK(contents(landing) == std::vector<std::string>{std::to_string(EventLanding::kSlots),
                                                        std::to_string(EventLanding::kSlots + 1)});
}

TEST_CASE("an area of another layout is taken as empty") {
    std::vector<std::uint64_t> area((EventLanding::bytes_needed() + 4096) / 8, ~0ull);
    auto* aligned = reinterpret_cast<std::byte*>(
        (reinterpret_cast<std::uintptr_t>(area.data()) + 4095) & ~std::uintptr_t{4095});
    EventLanding landing({aligned, EventLanding::bytes_needed()});
    CHECK(landing.landed() == 0);
}
