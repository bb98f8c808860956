#pragma once
// The two netlink threads: the DESTROY event reader and the periodic dumper.
// Neither touches the database or the accounting state; both only feed the
// SampleQueue.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "conntrack/event_socket.hpp"
#include "metrics/metrics.hpp"
#include "runtime/runtime_config.hpp"
#include "runtime/sample_queue.hpp"

namespace ctquota::runtime {

class Readers {
  public:
    Readers(const ConntrackConfig& config, SampleQueue& queue, metrics::Metrics& metrics);
    ~Readers();

    void start();
    void stop();  // joins both threads
    void request_resync();

  private:
    void event_loop();
    void dump_loop();
    bool dump_once(std::uint64_t seq);
    void hand_off(std::vector<core::FlowSample>&& batch);

    const ConntrackConfig& config_;
    SampleQueue& queue_;
    metrics::Metrics& metrics_;
    conntrack::EventSocket events_;  // opened in the constructor: events are buffered from then on
    std::atomic<bool> stopping_{false};
    std::mutex mu_;
    std::condition_variable wake_;
    bool resync_requested_ = false;
    std::thread event_thread_;
    std::thread dump_thread_;
};

}  // namespace ctquota::runtime
