// FileWriterPool: writes regular-file contents and their final metadata on a few writer
// threads while the extraction thread goes on parsing and creating entries.
//
// The extraction thread creates each file (so namespace operations keep tar order), then
// hands over the open fd with BeginFile, its bytes with Append and the end with EndFile.
// Bytes are copied into slabs from a fixed pool (pigz's "pool of spaces"): small files are
// packed back to back in one slab, a large file spans several. A work item is a run of one
// file's bytes in one slab, written with pwrite at its file offset, so any writer may take it
// and a large file is written by several writers at once. The writer that completes a file's
// last item applies its metadata (chown, xattrs, chmod, times: after the data, see
// entry_writer.h) and closes it.
//
// Bounds: memory = slab_count * slab_size; open fds and queued items are bounded by the
// fixed number of file jobs. When either runs out, the producer waits (backpressure).
//
// Ordering the extractor relies on: WaitForEntry(dir, name) returns once no job is writing
// the file created as `name` in directory `dir` (a hard link must not apply its metadata
// before its target's writer does). Any other name for a job's inode can only come from a
// hard link, which waited for the job, so the creation name identifies the job exactly.
// Finish() drains everything; directory times are fixed by the caller after it.
//
// With 0 threads everything runs inline on the caller's thread, without copying.
//
// Threads: one producer thread calls every method; writers are std::jthreads owned here and
// joined by Finish() or the destructor. Lock order: mu_ is the only lock.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "unpack/entry_writer.h"
#include "unpack/timing.h"

namespace zsnap::unpack {

class FileWriterPool {
 public:
  struct Job;  // one file in flight

  FileWriterPool(int threads, size_t slab_size = 1 << 20, size_t slab_count = 0);
  ~FileWriterPool();
  FileWriterPool(const FileWriterPool&) = delete;
  FileWriterPool& operator=(const FileWriterPool&) = delete;

  // Takes ownership of `fd`, created as `name` in the directory `dir` (st_dev/st_ino
  // identify it). `meta` is copied. `size` is the file's final size (sparse files: the tail
  // hole is made with ftruncate). Fails with the first writer error.
  absl::StatusOr<Job*> BeginFile(ScopedFd fd, std::string_view entry, const EntryMeta& meta,
                                 uint64_t size, const struct stat& dir, std::string_view name);
  absl::Status Append(Job* job, std::span<const std::byte> data, uint64_t offset);
  absl::Status EndFile(Job* job);

  // Blocks while a job writes the file created as `name` in directory `dir`.
  void WaitForEntry(const struct stat& dir, std::string_view name);

  // Waits for every job, stops the writers, returns the first error.
  absl::Status Finish();

  int threads() const { return threads_; }  // 0 = inline
  // Time spent in write syscalls (summed over writers) and time the producer waited.
  StageTime time() const { return time_; }

 private:
  struct Slab {
    std::byte* data;
    int refs = 0;  // guarded by mu_: the producer's hold + queued items
  };
  struct Item {
    Job* job;
    Slab* slab;  // nullptr: no data, the file's metadata only
    size_t begin, len;
    uint64_t offset;
  };

  void WriterLoop(std::stop_token stop);
  void Process(const Item& item, double& busy_s);
  absl::Status Finalize(Job* job);
  absl::Status FlushRun() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Failure() ABSL_LOCKS_EXCLUDED(mu_);
  void Release(Slab* slab) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int threads_;
  const size_t slab_size_;
  std::unique_ptr<std::byte[]> storage_;
  std::vector<Slab> slabs_;
  std::vector<std::unique_ptr<Job>> jobs_;

  // Producer-only state: the slab being filled and the run of one file's bytes in it not
  // yet queued.
  Slab* cur_slab_ = nullptr;
  size_t cur_fill_ = 0;
  Job* run_job_ = nullptr;
  size_t run_begin_ = 0;
  uint64_t run_offset_ = 0;
  StageTime time_;

  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<Slab*> free_slabs_ ABSL_GUARDED_BY(mu_);
  std::vector<Job*> free_jobs_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  double writer_busy_s_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> failed_{false};

  std::vector<std::jthread> writers_;  // last member: joined before the state above dies
};

}  // namespace zsnap::unpack
