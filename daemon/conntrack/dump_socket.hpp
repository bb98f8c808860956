#pragma once
// DumpSocket: a full dump of the conntrack table (the progress of live
// connections). Samples are handed out in batches so the caller can pass them
// on while the dump is still running.

#include <cstdint>
#include <functional>
#include <vector>

#include "core/flow.hpp"

struct mnl_socket;

namespace ctquota::conntrack {

struct DumpResult {
    bool complete = false;  // false: interrupted or failed; do not infer lost flows from it
    std::uint64_t entries = 0;
    int error = 0;
};

class DumpSocket {
  public:
    DumpSocket();
    ~DumpSocket();
    DumpSocket(const DumpSocket&) = delete;
    DumpSocket& operator=(const DumpSocket&) = delete;

    using BatchFn = std::function<void(std::vector<core::FlowSample>&&)>;
    DumpResult dump(const BatchFn& on_batch, std::size_t batch_size = 4096);

  private:
    mnl_socket* nl_ = nullptr;
    std::uint32_t portid_ = 0;
    std::uint32_t seq_ = 0;
};

}  // namespace ctquota::conntrack
