#pragma once
// The parts of the configuration the flow records read: [records] (the
// stage), [flowlog] (PostgreSQL) and [ipfix] (the exporter). app::Config
// holds them; loading and validation live in app/ (deploy/ctquotad.toml
// documents every key).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace ctquota::sinks {

using namespace std::chrono_literals;

struct RecordsConfig {
    // A connection open this long since its start or its previous record gets an interim record.
    std::chrono::nanoseconds interim_interval = 5min;
};

struct FlowLogConfig {
    bool enabled = false;
    std::chrono::nanoseconds retention = std::chrono::hours(24 * 180);
    bool only_translated = false;          // only connections NAT changed
    std::vector<std::string> subscribers;  // external ids; empty: every connection
    std::size_t queue_records = 262144;
    std::size_t batch_records = 20000;             // a COPY starts once this many wait...
    std::chrono::nanoseconds flush_interval = 1s;  // ...or the first of them waited this long
};

struct IpfixCollector {
    std::string text;  // as written: "192.0.2.10:4739", "[2001:db8::10]:4739"
    std::string address;
    std::uint16_t port = 0;
};

enum class IpfixTransport : std::uint8_t { Udp, Tcp };
enum class IpfixLayoutChoice : std::uint8_t { Biflow, PerDirection };

struct IpfixConfig {
    std::vector<IpfixCollector> collectors;  // empty: no export
    IpfixTransport transport = IpfixTransport::Udp;
    std::uint32_t observation_domain = 1;
    IpfixLayoutChoice layout = IpfixLayoutChoice::Biflow;
    std::chrono::nanoseconds template_refresh = 60s;  // UDP
    std::uint32_t template_every = 100;               // UDP: messages
    std::size_t max_message_bytes = 1400;
    std::size_t queue_records = 262144;
};

}  // namespace ctquota::sinks
