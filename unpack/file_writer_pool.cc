#include "unpack/file_writer_pool.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "unpack/posix_status.h"

namespace zsnap::unpack {
namespace {

// Open fds and queued items are bounded by this many files in flight.
constexpr size_t kMaxJobs = 256;

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

struct FileWriterPool::Job {
  ScopedFd fd;
  std::string entry;
  EntryMeta meta;
  uint64_t size = 0;
  uint64_t end = 0;   // producer: highest offset appended
  dev_t dir_dev = 0;  // where it was created, for WaitForEntry
  ino_t dir_ino = 0;
  std::string name;
  // Guarded by the pool's mu_ (not expressible as an annotation on a nested type):
  int pending = 0;   // queued items + the producer's hold until EndFile
  bool done = true;  // finalized and back on the free list
};

FileWriterPool::FileWriterPool(int threads, size_t slab_size, size_t slab_count)
    : threads_(std::max(threads, 0)), slab_size_(slab_size) {
  if (threads <= 0) {
    jobs_.push_back(std::make_unique<Job>());  // the one inline job, reused
    return;
  }
  if (slab_count == 0) slab_count = std::max<size_t>(8, 4 * static_cast<size_t>(threads));
  storage_ = std::make_unique_for_overwrite<std::byte[]>(slab_count * slab_size_);
  slabs_.resize(slab_count);
  jobs_.reserve(kMaxJobs);
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < slab_count; ++i) {
    slabs_[i].data = storage_.get() + i * slab_size_;
    free_slabs_.push_back(&slabs_[i]);
  }
  for (size_t i = 0; i < kMaxJobs; ++i) {
    jobs_.push_back(std::make_unique<Job>());
    free_jobs_.push_back(jobs_.back().get());
  }
  writers_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    writers_.emplace_back([this](std::stop_token stop) { WriterLoop(stop); });
  }
}

FileWriterPool::~FileWriterPool() {
  if (writers_.empty()) return;
  {
    // Abandoned (an error elsewhere): writers drop what is queued without writing it.
    absl::MutexLock lock(&mu_);
    closed_ = true;
    failed_ = true;
  }
  writers_.clear();  // joins; jobs' fds close with jobs_
}

absl::Status FileWriterPool::Failure() {
  absl::MutexLock lock(&mu_);
  return error_;
}

absl::StatusOr<FileWriterPool::Job*> FileWriterPool::BeginFile(ScopedFd fd, std::string_view entry,
                                                               const EntryMeta& meta, uint64_t size,
                                                               const struct stat& dir,
                                                               std::string_view name) {
  Job* job;
  if (writers_.empty()) {
    job = jobs_.front().get();
  } else {
    auto start = std::chrono::steady_clock::now();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](FileWriterPool* p) { return !p->free_jobs_.empty() || p->failed_; }, this));
    time_.wait_s += Since(start);
    if (failed_) return error_;
    job = free_jobs_.back();
    free_jobs_.pop_back();
    job->done = false;
    job->pending = 1;
  }
  job->fd = std::move(fd);
  job->entry.assign(entry);
  job->meta.uid = meta.uid;
  job->meta.gid = meta.gid;
  job->meta.perm = meta.perm;
  job->meta.times[0] = meta.times[0];
  job->meta.times[1] = meta.times[1];
  job->meta.xattrs.assign(meta.xattrs.begin(), meta.xattrs.end());
  job->meta.do_chown = meta.do_chown;
  job->meta.do_chmod = meta.do_chmod;
  job->meta.do_times = meta.do_times;
  job->size = size;
  job->end = 0;
  job->dir_dev = dir.st_dev;
  job->dir_ino = dir.st_ino;
  job->name.assign(name);
  return job;
}

absl::Status FileWriterPool::Append(Job* job, std::span<const std::byte> data, uint64_t offset) {
  job->end = std::max(job->end, offset + data.size());
  if (writers_.empty()) {
    absl::Status s = WriteAll(job->fd.get(), data.data(), data.size(), offset);
    return s.ok() ? s : EntryError(job->entry, s);
  }
  while (!data.empty()) {
    if (run_job_ != nullptr &&
        (run_job_ != job || run_offset_ + (cur_fill_ - run_begin_) != offset)) {
      if (absl::Status s = FlushRun(); !s.ok()) return s;
    }
    if (cur_slab_ == nullptr || cur_fill_ == slab_size_) {
      if (absl::Status s = FlushRun(); !s.ok()) return s;
      auto start = std::chrono::steady_clock::now();
      absl::MutexLock lock(&mu_);
      if (cur_slab_ != nullptr) Release(cur_slab_);
      cur_slab_ = nullptr;
      mu_.Await(absl::Condition(
          +[](FileWriterPool* p) { return !p->free_slabs_.empty() || p->failed_; }, this));
      time_.wait_s += Since(start);
      if (failed_) return error_;
      cur_slab_ = free_slabs_.back();
      free_slabs_.pop_back();
      cur_slab_->refs = 1;  // the producer's hold
      cur_fill_ = 0;
    }
    if (run_job_ == nullptr) {
      run_job_ = job;
      run_begin_ = cur_fill_;
      run_offset_ = offset;
    }
    size_t n = std::min(data.size(), slab_size_ - cur_fill_);
    std::memcpy(cur_slab_->data + cur_fill_, data.data(), n);
    cur_fill_ += n;
    offset += n;
    data = data.subspan(n);
  }
  return failed_ ? Failure() : absl::OkStatus();
}

absl::Status FileWriterPool::FlushRun() {
  if (run_job_ == nullptr) return absl::OkStatus();
  Item item{run_job_, cur_slab_, run_begin_, cur_fill_ - run_begin_, run_offset_};
  run_job_ = nullptr;
  absl::MutexLock lock(&mu_);
  ++cur_slab_->refs;
  ++item.job->pending;
  queue_.push_back(item);
  return absl::OkStatus();
}

absl::Status FileWriterPool::EndFile(Job* job) {
  if (writers_.empty()) {
    absl::Status s = Finalize(job);
    return s.ok() ? s : EntryError(job->entry, s);
  }
  if (run_job_ == job) {
    if (absl::Status s = FlushRun(); !s.ok()) return s;
  }
  absl::MutexLock lock(&mu_);
  if (--job->pending == 0) {
    // Every byte is already written: queue the metadata step on its own.
    job->pending = 1;
    queue_.push_back(Item{job, nullptr, 0, 0, 0});
  }
  return failed_ ? error_ : absl::OkStatus();
}

void FileWriterPool::WaitForEntry(const struct stat& dir, std::string_view name) {
  if (writers_.empty()) return;
  auto start = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mu_);
  for (const auto& job : jobs_) {
    // dir_dev, dir_ino and name are written by this (producer) thread only.
    if (!job->done && job->dir_ino == dir.st_ino && job->dir_dev == dir.st_dev &&
        job->name == name) {
      mu_.Await(absl::Condition(&job->done));
    }
  }
  time_.wait_s += Since(start);
}

absl::Status FileWriterPool::Finish() {
  if (writers_.empty()) return absl::OkStatus();
  absl::Status s = FlushRun();
  auto start = std::chrono::steady_clock::now();
  {
    absl::MutexLock lock(&mu_);
    if (cur_slab_ != nullptr) Release(cur_slab_);
    cur_slab_ = nullptr;
    mu_.Await(absl::Condition(
        +[](FileWriterPool* p) { return p->free_jobs_.size() == p->jobs_.size(); }, this));
    closed_ = true;
  }
  writers_.clear();  // joins
  time_.wait_s += Since(start);
  absl::MutexLock lock(&mu_);
  time_.busy_s += writer_busy_s_;
  if (!error_.ok()) return error_;
  return s;
}

void FileWriterPool::Release(Slab* slab) {
  if (--slab->refs == 0) free_slabs_.push_back(slab);
}

void FileWriterPool::WriterLoop(std::stop_token) {
  double busy_s = 0;
  for (;;) {
    Item item;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](FileWriterPool* p) { return !p->queue_.empty() || p->closed_; }, this));
      if (queue_.empty()) break;
      item = queue_.front();
      queue_.pop_front();
    }
    Process(item, busy_s);
  }
  absl::MutexLock lock(&mu_);
  writer_busy_s_ += busy_s;
}

void FileWriterPool::Process(const Item& item, double& busy_s) {
  Job* job = item.job;
  absl::Status s;
  auto start = std::chrono::steady_clock::now();
  if (item.slab != nullptr && !failed_) {
    s = WriteAll(job->fd.get(), item.slab->data + item.begin, item.len, item.offset);
  }
  bool last;
  {
    absl::MutexLock lock(&mu_);
    if (item.slab != nullptr) Release(item.slab);
    last = --job->pending == 0;
  }
  if (last && s.ok() && !failed_) s = Finalize(job);
  if (last) job->fd.Reset();
  busy_s += Since(start);
  absl::MutexLock lock(&mu_);
  if (!s.ok() && error_.ok()) {
    error_ = EntryError(job->entry, s);
    failed_ = true;
  }
  if (last) {
    job->done = true;
    free_jobs_.push_back(job);
  }
}

absl::Status FileWriterPool::Finalize(Job* job) {
  int fd = job->fd.get();
  // A sparse file may end in a hole that no data block reached.
  if (job->end < job->size && ftruncate(fd, static_cast<off_t>(job->size)) != 0) {
    return SyscallError("truncate", errno);
  }
  if (absl::Status s = ApplyMetaFd(fd, job->meta); !s.ok()) return s;
  if (close(job->fd.Release()) != 0) return SyscallError("close", errno);
  return absl::OkStatus();
}

}  // namespace zsnap::unpack
