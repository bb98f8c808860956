#include "runtime/sample_queue.hpp"

namespace ctquota::runtime {

bool SampleQueue::try_push(QueueItem&& item) {
    {
        std::lock_guard lock(mu_);
        if (closed_ || (samples_ + weight(item) > capacity_ && weight(item) > 0)) {
            return false;
        }
        samples_ += weight(item);
        items_.push_back(std::move(item));
    }
    not_empty_.notify_one();
    return true;
}

bool SampleQueue::push_wait(QueueItem&& item, Lane lane, bool* waited) {
    {
        std::unique_lock lock(mu_);
        const auto room = [&] {
            return closed_ || samples_ == 0 || samples_ + weight(item) <= limit(lane);
        };
        if (waited != nullptr) {
            *waited = !room();
        }
        not_full_.wait(lock, room);
        if (closed_) {
            return false;
        }
        samples_ += weight(item);
        items_.push_back(std::move(item));
    }
    not_empty_.notify_one();
    return true;
}

bool SampleQueue::pop_all(std::deque<QueueItem>& out, std::chrono::milliseconds timeout) {
    {
        std::unique_lock lock(mu_);
        not_empty_.wait_for(lock, timeout, [&] { return closed_ || !items_.empty(); });
        if (items_.empty()) {
            return !closed_;
        }
        out.swap(items_);
        items_.clear();
        samples_ = 0;
    }
    not_full_.notify_all();
    return true;
}

void SampleQueue::close() {
    {
        std::lock_guard lock(mu_);
        closed_ = true;
    }
    not_empty_.notify_all();
    not_full_.notify_all();
}

std::size_t SampleQueue::queued_samples() const {
    std::lock_guard lock(mu_);
    return samples_;
}

}  // namespace ctquota::runtime
