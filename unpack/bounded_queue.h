// BoundedQueue<T>: a blocking FIFO of at most `capacity` items joining two pipeline stages.
// Push blocks while full (backpressure), Pop blocks while empty. Close() is the producer's
// end-of-stream: Pop drains what is queued, then returns nullopt. Both block with a
// std::stop_token: a requested stop wakes every waiter and makes Push/Pop give up at once,
// which is how a failing or cancelled pipeline unblocks its other stages.
//
// Thread safety: any number of producers and consumers. Lock order: the queue's mutex is a
// leaf (no other lock is taken while it is held).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <stop_token>
#include <utility>

#include "absl/base/thread_annotations.h"

namespace zsnap::unpack {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Waits for space and enqueues. False (and `item` is dropped) if the queue is closed or
  // `stop` was requested.
  bool Push(T item, std::stop_token stop = {}) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, stop, [&] { return closed_ || items_.size() < capacity_; });
    if (closed_ || stop.stop_requested()) return false;
    items_.push_back(std::move(item));
    lock.unlock();
    not_empty_.notify_one();
    return true;
  }

  // Waits for an item. nullopt once the queue is closed and drained, or when `stop` is
  // requested (even if items remain: a stopped pipeline discards them).
  std::optional<T> Pop(std::stop_token stop = {}) {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, stop, [&] { return closed_ || !items_.empty(); });
    if (items_.empty() || stop.stop_requested()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return item;
  }

  // No more pushes; wakes all waiters. Idempotent.
  void Close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  size_t size() const {
    std::lock_guard lock(mu_);
    return items_.size();
  }
  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable_any not_empty_;
  std::condition_variable_any not_full_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace zsnap::unpack
