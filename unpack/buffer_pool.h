// BufferPool: a fixed set of equal-size byte buffers allocated once (pigz's "pool of
// spaces"). A stage Acquire()s a buffer, fills it, and hands the move-only handle down the
// pipeline; the handle returns the buffer to the pool when destroyed. Acquire blocks while
// every buffer is out, so a pipeline's memory is count * size by construction and a slow
// consumer throttles its producers.
//
// Ownership: the pool owns the memory and must outlive every handle (checked on
// destruction). The storage is one anonymous mapping advised for transparent huge pages
// and populated up front: with 4 KiB pages the pipeline's 12 MiB took ~3k first-touch
// faults in the reader and decoder threads plus TLB misses on every pass over a buffer;
// huge pages cut the unpack's CPU time by ~8% (300 MB layer, zstd and gzip).
// Thread safety: Acquire and handle destruction from any thread; a single
// handle is used by one thread at a time.
#pragma once

#include <sys/mman.h>

#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace zsnap::unpack {

class BufferPool {
 public:
  // A buffer on loan: `capacity()` bytes of storage, of which the first `size()` are data.
  class Buffer {
   public:
    Buffer(Buffer&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), data_(other.data_), size_(other.size_) {}
    Buffer& operator=(Buffer&& other) noexcept {
      if (this != &other) {
        Release();
        pool_ = std::exchange(other.pool_, nullptr);
        data_ = other.data_;
        size_ = other.size_;
      }
      return *this;
    }
    ~Buffer() { Release(); }

    std::byte* data() const { return data_; }
    size_t capacity() const { return pool_->buffer_size_; }
    size_t size() const { return size_; }
    void set_size(size_t n) { size_ = n; }
    // The filled part, and the free tail after it.
    std::span<const std::byte> bytes() const { return {data_, size_}; }
    std::span<std::byte> free_space() const { return {data_ + size_, capacity() - size_}; }
    bool full() const { return size_ == capacity(); }

   private:
    friend class BufferPool;
    Buffer(BufferPool* pool, std::byte* data) : pool_(pool), data_(data) {}
    void Release() {
      if (pool_ != nullptr) pool_->Return(data_);
      pool_ = nullptr;
    }

    BufferPool* pool_;
    std::byte* data_;
    size_t size_ = 0;
  };

  BufferPool(size_t count, size_t buffer_size)
      : buffer_size_(buffer_size), count_(count), storage_(Allocate(count * buffer_size)) {
    free_.reserve(count);
    for (size_t i = 0; i < count; ++i) free_.push_back(storage_.get() + i * buffer_size);
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool() {
    std::lock_guard lock(mu_);
    if (free_.size() != count_) std::abort();  // a handle outlived its pool
  }

  // Waits for a free buffer (empty, size() == 0). nullopt if `stop` is requested first.
  std::optional<Buffer> Acquire(std::stop_token stop = {}) {
    std::unique_lock lock(mu_);
    available_.wait(lock, stop, [&] { return !free_.empty(); });
    if (free_.empty() || stop.stop_requested()) return std::nullopt;
    std::byte* data = free_.back();
    free_.pop_back();
    return Buffer(this, data);
  }

  size_t buffer_size() const { return buffer_size_; }
  size_t count() const { return count_; }
  size_t available() const {
    std::lock_guard lock(mu_);
    return free_.size();
  }

 private:
  struct Unmap {
    size_t bytes;
    void operator()(std::byte* p) const {
      if (bytes > 0) ::munmap(p, bytes);
    }
  };
  using Storage = std::unique_ptr<std::byte[], Unmap>;

  static Storage Allocate(size_t bytes) {
    if (bytes == 0) return Storage(nullptr, Unmap{0});
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();  // out of memory: as fatal as a failed new
    // Hints only (errors ignored): huge pages where the kernel allows them (THP "madvise"
    // or "always"), then fault everything in with one call instead of page by page.
    ::madvise(p, bytes, MADV_HUGEPAGE);
    ::madvise(p, bytes, MADV_POPULATE_WRITE);
    return Storage(static_cast<std::byte*>(p), Unmap{bytes});
  }

  void Return(std::byte* data) {
    {
      std::lock_guard lock(mu_);
      free_.push_back(data);
    }
    available_.notify_one();
  }

  const size_t buffer_size_;
  const size_t count_;
  const Storage storage_;
  mutable std::mutex mu_;
  std::condition_variable_any available_;
  std::vector<std::byte*> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace zsnap::unpack
