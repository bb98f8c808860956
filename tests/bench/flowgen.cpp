// flowgen: generates many short UDP flows at a set rate, for the end-to-end
// benchmark. Each flow is a distinct 5-tuple (source address x destination
// port) of `packets` datagrams; sources are the addresses given, which must be
// local to the namespace it runs in.
//
//   flowgen DST_ADDR FLOWS RATE PACKETS PAYLOAD SRC_ADDR [SRC_ADDR...]
//
// RATE is new flows per second (0 = as fast as possible). Prints one JSON
// line with what was sent, so the caller computes the ground truth.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Source {
    int fd = -1;
    std::string address;
    std::uint64_t flows = 0;
    std::uint64_t packets = 0;
};

int open_source(const char* address) {
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(40000);
    if (fd < 0 || inet_pton(AF_INET, address, &sa.sin_addr) != 1 ||
        bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        std::perror(address);
        std::exit(2);
    }
    int size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 7) {
        std::fprintf(stderr, "usage: flowgen DST FLOWS RATE PACKETS PAYLOAD SRC...\n");
        return 2;
    }
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
        std::fprintf(stderr, "bad destination %s\n", argv[1]);
        return 2;
    }
    const std::uint64_t flows = std::strtoull(argv[2], nullptr, 10);
    const double rate = std::strtod(argv[3], nullptr);
    const unsigned packets = static_cast<unsigned>(std::strtoul(argv[4], nullptr, 10));
    const std::size_t payload = std::strtoull(argv[5], nullptr, 10);
    std::vector<Source> sources;
    for (int i = 6; i < argc; ++i) {
        sources.push_back(Source{open_source(argv[i]), argv[i]});
    }
    std::vector<char> data(payload, 'x');
    constexpr unsigned kBatch = 64;
    std::vector<sockaddr_in> addrs(kBatch, dst);
    std::vector<iovec> iov(kBatch, iovec{data.data(), payload});
    std::vector<mmsghdr> msgs(kBatch);

    const auto start = std::chrono::steady_clock::now();
    std::uint64_t sent_flows = 0;
    std::uint64_t failures = 0;
    // Flows go out in blocks: for each source, `per_call` consecutive
    // destination ports in one sendmmsg, so a syscall carries many flows.
    // Flow tuples never repeat within 65000 ports per source.
    const unsigned per_call = std::max(1u, kBatch / std::max(packets, 1u));
    std::uint32_t next_port = 1;
    while (sent_flows < flows) {
        for (auto& src : sources) {
            const std::uint64_t take = std::min<std::uint64_t>(per_call, flows - sent_flows);
            if (take == 0) {
                break;
            }
            unsigned n = 0;
            for (std::uint64_t f = 0; f < take; ++f) {
                const auto port = static_cast<std::uint16_t>(1 + (next_port - 1 + f) % 65000);
                for (unsigned p = 0; p < packets && n < kBatch; ++p) {
                    addrs[n].sin_port = htons(port);
                    msgs[n] = {};
                    msgs[n].msg_hdr.msg_name = &addrs[n];
                    msgs[n].msg_hdr.msg_namelen = sizeof(sockaddr_in);
                    msgs[n].msg_hdr.msg_iov = &iov[n];
                    msgs[n].msg_hdr.msg_iovlen = 1;
                    ++n;
                }
            }
            // Packets of one flow leave in order; a flow never spans two calls
            // unless it has more packets than a batch holds.
            for (unsigned extra = 0; packets > kBatch && extra < (packets - 1) / kBatch; ++extra) {
                if (sendmmsg(src.fd, msgs.data(), kBatch, 0) != static_cast<int>(kBatch)) {
                    ++failures;
                }
                src.packets += kBatch;
            }
            const unsigned last =
                packets > kBatch ? packets - ((packets - 1) / kBatch) * kBatch : n;
            if (sendmmsg(src.fd, msgs.data(), last, 0) != static_cast<int>(last)) {
                ++failures;
            }
            src.packets += last;
            src.flows += take;
            sent_flows += take;
            if (rate > 0) {
                const auto due =
                    start + std::chrono::duration<double>(static_cast<double>(sent_flows) / rate);
                std::this_thread::sleep_until(due);  // pacing, not synchronisation
            }
        }
        next_port += per_call;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "{\"flows\":%llu,\"seconds\":%.3f,\"rate\":%.0f,\"send_failures\":%llu,\"per_source\":{",
        static_cast<unsigned long long>(sent_flows), secs, static_cast<double>(sent_flows) / secs,
        static_cast<unsigned long long>(failures));
    for (std::size_t i = 0; i < sources.size(); ++i) {
        std::printf("%s\"%s\":[%llu,%llu]", i ? "," : "", sources[i].address.c_str(),
                    static_cast<unsigned long long>(sources[i].flows),
                    static_cast<unsigned long long>(sources[i].packets));
        close(sources[i].fd);
    }
    std::printf("}}\n");
    return failures == 0 ? 0 : 1;
}
