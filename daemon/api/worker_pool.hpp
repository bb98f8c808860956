#pragma once
// api::WorkerPool: a fixed number of threads running jobs from a bounded
// queue. The HTTP handlers block on PostgreSQL, so they run here and never on
// the threads that read and write sockets; a full queue refuses the job
// (the caller answers 503) instead of growing.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ctquota::api {

class WorkerPool {
  public:
    WorkerPool(std::size_t threads, std::size_t max_queued);
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    // False when `max_queued` jobs are already waiting (or the pool stopped).
    bool try_submit(std::function<void()> job);
    // Runs what is queued, then joins the threads.
    void stop();

  private:
    void run();

    std::size_t max_queued_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace ctquota::api
