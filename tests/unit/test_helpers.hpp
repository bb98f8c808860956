#pragma once
// Builders for core values in tests.

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "core/flow.hpp"

namespace ctquota::test {

inline core::IpAddress ip(const std::string& text) {
    auto a = core::IpAddress::parse(text);
    if (!a) {
        throw std::invalid_argument("bad test address " + text);
    }
    return *a;
}

// A UDP flow from src:sport to dst:53, NAT'ed to 198.18.0.1 on the way out.
inline core::FlowSample flow(std::uint32_t id, const std::string& src, std::uint16_t sport,
                             const std::string& dst = "198.18.0.2", std::uint64_t start_ns = 1000) {
    core::FlowSample s;
    s.id = id;
    s.orig = core::FlowTuple{ip(src), ip(dst), sport, 53, 17};
    const std::string nat = src.find(':') == std::string::npos ? "198.18.0.1" : "2001:db8:ffff::1";
    s.reply = core::FlowTuple{ip(dst), ip(nat), 53, sport, 17};
    s.start_ns = start_ns;
    return s;
}

inline core::FlowSample with(core::FlowSample s, core::SampleKind kind, std::uint64_t ob,
                             std::uint64_t op, std::uint64_t rb, std::uint64_t rp) {
    s.kind = kind;
    s.orig_counters = core::Counters{ob, op};
    s.reply_counters = core::Counters{rb, rp};
    return s;
}

inline core::FlowSample poll(const core::FlowSample& s, std::uint64_t ob, std::uint64_t op,
                             std::uint64_t rb, std::uint64_t rp) {
    return with(s, core::SampleKind::Poll, ob, op, rb, rp);
}

inline core::FlowSample destroy(const core::FlowSample& s, std::uint64_t ob, std::uint64_t op,
                                std::uint64_t rb, std::uint64_t rp) {
    return with(s, core::SampleKind::Destroy, ob, op, rb, rp);
}

// A fresh directory under /tmp, removed with everything in it.
struct ScratchDir {
    std::filesystem::path path;
    ScratchDir() {
        char tmpl[] = "/tmp/ctquota-test-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~ScratchDir() { std::filesystem::remove_all(path); }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
};

}  // namespace ctquota::test
