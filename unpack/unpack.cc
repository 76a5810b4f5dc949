// UnpackLayer: the streaming pipeline.
//
//   reader thread   ByteSource -> in_pool buffers (1 MiB), SHA-256 of the compressed bytes
//        | in_queue (kInBuffers)
//   decoder thread  Decoder: in buffers -> out_pool buffers (1 MiB), uncompressed-size limit
//        | out_queue (kOutBuffers)
//   hasher thread   SHA-256 of the tar bytes (the diffID), buffers passed on unchanged
//        | tar_queue (kOutBuffers)
//   calling thread  ExtractTar pulls chunks through QueueChunkSource; ExtractTar's own
//                   writer threads
//
// Memory is bounded by construction: (kInBuffers + kOutBuffers) MiB of buffers, the
// extractor's writer slabs, and the decoder state (ISA-L ~100 KiB; zstd the window a frame
// declares, at most 2^zstd_window_log_max, plus ~0.5 MiB). A full queue blocks its producer;
// an empty one blocks its consumer. One std::stop_source (`abort`) is requested
// when a stage fails or the caller cancels; every blocking wait watches it, so all stages
// unwind and the threads (std::jthread, never detached) are joined before returning.
//
// Why the diffID has its own thread: hashing the tar bytes on the extract thread made that
// thread the bottleneck for zstd layers (python image, 1 GB layer: decode 1.35 s busy, the
// extract thread 1.0 s hashing + 1.6 s creating files). As a stage of its own in the chain,
// the hash needs no shared or refcounted buffers: it holds each buffer only while hashing it.
#include "unpack/unpack.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "unpack/bounded_queue.h"
#include "unpack/buffer_pool.h"
#include "unpack/decoder.h"
#include "unpack/digest.h"
#include "unpack/tar_extractor.h"

namespace zsnap::unpack {
namespace {

constexpr size_t kBufferSize = 1 << 20;
constexpr size_t kInBuffers = 4;
constexpr size_t kOutBuffers = 8;

using Clock = std::chrono::steady_clock;
using Buffer = BufferPool::Buffer;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Adds the lifetime of the scope to `acc` (seconds).
class ScopedTimer {
 public:
  explicit ScopedTimer(double& acc) : acc_(acc), start_(Clock::now()) {}
  ~ScopedTimer() { acc_ += SecondsSince(start_); }

 private:
  double& acc_;
  Clock::time_point start_;
};

absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

// State shared by the stages of one UnpackLayer call. Members written by one stage thread
// are read by the caller only after that thread is joined.
struct Pipeline {
  explicit Pipeline(const UnpackOptions& o) : options(o) {}

  // Records the first failure and stops every stage.
  void Fail(absl::Status status) {
    {
      std::lock_guard lock(mu);
      if (first_error.ok()) first_error = std::move(status);
    }
    abort.request_stop();
  }
  absl::Status Error() {
    std::lock_guard lock(mu);
    return first_error;
  }

  const UnpackOptions& options;
  std::stop_source abort;
  std::mutex mu;
  absl::Status first_error ABSL_GUARDED_BY(mu);

  // Pools before queues: queued handles are destroyed before the pools they return to.
  BufferPool in_pool{kInBuffers, kBufferSize};
  BufferPool out_pool{kOutBuffers, kBufferSize};
  BoundedQueue<Buffer> in_queue{kInBuffers};
  BoundedQueue<Buffer> out_queue{kOutBuffers};
  BoundedQueue<Buffer> tar_queue{kOutBuffers};

  // Reader thread.
  Sha256 compressed_hash;
  uint64_t bytes_in = 0;
  StageTime read;
  double read_hash_s = 0;

  // Decoder thread.
  Codec codec = Codec::kDetect;
  uint64_t bytes_out = 0;
  StageTime decode;

  // Hasher thread.
  Sha256 diff_hash;
  double diff_hash_s = 0;
};

void ReadStage(Pipeline& p, ByteSource& source) {
  std::stop_token stop = p.abort.get_token();
  while (true) {
    std::optional<Buffer> buf;
    {
      ScopedTimer wait(p.read.wait_s);
      buf = p.in_pool.Acquire(stop);
    }
    if (!buf) return;
    // Fill the whole buffer: fewer, larger hand-offs downstream.
    bool eof = false;
    {
      ScopedTimer busy(p.read.busy_s);
      while (!buf->full() && !stop.stop_requested()) {
        std::span<std::byte> space = buf->free_space();
        absl::StatusOr<size_t> n = source.Read(space);
        if (!n.ok()) {
          p.Fail(absl::Status(n.status().code(),
                              absl::StrCat("reading compressed stream at offset ",
                                           p.bytes_in + buf->size(), ": ", n.status().message())));
          return;
        }
        if (*n > space.size()) {
          p.Fail(absl::InternalError("ByteSource::Read returned more than the buffer size"));
          return;
        }
        if (*n == 0) {
          eof = true;
          break;
        }
        buf->set_size(buf->size() + *n);
      }
    }
    {
      ScopedTimer hash(p.read_hash_s);
      p.compressed_hash.Update(buf->bytes());
    }
    p.bytes_in += buf->size();
    if (buf->size() > 0) {
      ScopedTimer wait(p.read.wait_s);
      if (!p.in_queue.Push(std::move(*buf), stop)) return;
    }
    if (eof) {
      p.in_queue.Close();
      return;
    }
  }
}

// Decodes in_queue into out_queue. Output buffers are pushed only when full (or at the end),
// so ExtractTar sees few, large chunks.
class DecodeStage {
 public:
  explicit DecodeStage(Pipeline& p)
      : p_(p), stop_(p.abort.get_token()), limit_(p.options.limits.max_uncompressed_bytes) {}

  void Run() {
    while (true) {
      std::optional<Buffer> in;
      {
        ScopedTimer wait(p_.decode.wait_s);
        in = p_.in_queue.Pop(stop_);
      }
      if (!in) {
        if (stop_.stop_requested()) return;
        break;  // end of the compressed stream
      }
      if (decoder_ == nullptr && !CreateDecoder(in->bytes())) return;
      std::span<const std::byte> bytes = in->bytes();
      while (!bytes.empty()) {
        absl::StatusOr<size_t> used = Step(bytes);
        if (!used.ok()) return;
        bytes = bytes.subspan(*used);
      }
    }
    if (decoder_ == nullptr && !CreateDecoder({})) return;
    // Drain output the decoder still holds, then check the stream ended cleanly.
    while (true) {
      absl::StatusOr<size_t> used = Step({});
      if (!used.ok()) return;
      if (last_produced_ == 0) break;
    }
    if (absl::Status s = decoder_->Finish(); !s.ok()) {
      p_.Fail(std::move(s));
      return;
    }
    if (!Emit()) return;
    p_.out_queue.Close();
  }

 private:
  bool CreateDecoder(std::span<const std::byte> prefix) {
    // containerd diff/stream.go compressedHandler: a media type that says "compressed" (or
    // "maybe") gets compression.DecompressStream, which trusts the magic bytes, not the
    // label; only an uncompressed OCI type skips detection (stdProcessor). `prefix` is the
    // first input buffer, filled to 1 MiB or the end of the stream, so always long enough.
    Codec codec = p_.options.codec == Codec::kPlain ? Codec::kPlain : DetectCodec(prefix);
    absl::StatusOr<std::unique_ptr<Decoder>> d = MakeDecoder(codec, p_.options.limits);
    if (!d.ok()) {
      p_.Fail(d.status());
      return false;
    }
    decoder_ = *std::move(d);
    p_.codec = codec;
    return true;
  }

  // One Decode call into the current output buffer; returns input bytes used. On error the
  // pipeline has been failed or stopped.
  absl::StatusOr<size_t> Step(std::span<const std::byte> in) {
    if (out_ && out_->full() && !Emit()) return absl::CancelledError("");
    if (!out_) {
      ScopedTimer wait(p_.decode.wait_s);
      out_ = p_.out_pool.Acquire(stop_);
      if (!out_) return absl::CancelledError("");
    }
    // Offer at most one byte past the limit, so a bomb is caught before it is buffered.
    // (bytes_out <= limit_ here: passing it fails the pipeline.)
    std::span<std::byte> space = out_->free_space();
    uint64_t room = limit_ - p_.bytes_out;
    if (space.size() > room) space = space.first(room + 1);
    absl::StatusOr<Decoder::Progress> r;
    {
      ScopedTimer busy(p_.decode.busy_s);
      r = decoder_->Decode(in, space);
    }
    if (!r.ok()) {
      p_.Fail(r.status());
      return r.status();
    }
    out_->set_size(out_->size() + r->produced);
    p_.bytes_out += r->produced;
    last_produced_ = r->produced;
    if (p_.bytes_out > limit_) {
      absl::Status s = absl::ResourceExhaustedError(
          absl::StrCat("uncompressed size exceeds the limit max_uncompressed_bytes=", limit_, " (",
                       ToAbsl(CodecName(p_.codec)), " bomb?)"));
      p_.Fail(s);
      return s;
    }
    if (!in.empty() && r->consumed == 0 && r->produced == 0) {
      absl::Status s = absl::InternalError(
          absl::StrCat(ToAbsl(CodecName(p_.codec)), " decoder made no progress"));
      p_.Fail(s);
      return s;
    }
    return r->consumed;
  }

  // Hands the current output buffer (if it holds data) to the extractor.
  bool Emit() {
    if (!out_ || out_->size() == 0) return true;
    ScopedTimer wait(p_.decode.wait_s);
    bool pushed = p_.out_queue.Push(std::move(*out_), stop_);
    out_.reset();
    return pushed;
  }

  Pipeline& p_;
  std::stop_token stop_;
  const uint64_t limit_;
  std::unique_ptr<Decoder> decoder_;
  std::optional<Buffer> out_;
  size_t last_produced_ = 0;
};

// Hashes every decoded buffer for the diffID and passes it on to the extractor.
void HashStage(Pipeline& p) {
  std::stop_token stop = p.abort.get_token();
  while (true) {
    std::optional<Buffer> buf = p.out_queue.Pop(stop);
    if (!buf) {
      if (!stop.stop_requested()) p.tar_queue.Close();  // end of the tar stream
      return;
    }
    {
      ScopedTimer busy(p.diff_hash_s);
      p.diff_hash.Update(buf->bytes());
    }
    if (!p.tar_queue.Push(std::move(*buf), stop)) return;
  }
}

// The extractor's view of tar_queue. Each chunk stays valid (its buffer is held) until the
// next call, as the ChunkSource contract requires.
class QueueChunkSource final : public ChunkSource {
 public:
  explicit QueueChunkSource(Pipeline& p) : p_(p), stop_(p.abort.get_token()) {}

  absl::StatusOr<std::span<const std::byte>> Next() override {
    current_.reset();  // back to the pool: the decoder may fill it again
    {
      ScopedTimer wait(wait_s_);
      current_ = p_.tar_queue.Pop(stop_);
    }
    if (!current_) {
      if (!stop_.stop_requested()) return std::span<const std::byte>();  // end of stream
      if (p_.options.stop.stop_requested()) return absl::CancelledError("unpack cancelled");
      absl::Status s = p_.Error();
      return s.ok() ? absl::CancelledError("unpack aborted") : s;
    }
    return current_->bytes();
  }

  // Reads the rest of the stream (tar padding after the end-of-archive blocks, or what the
  // extractor left) so the hasher sees every byte and the decoder reaches its end checks.
  absl::Status Drain() {
    while (true) {
      absl::StatusOr<std::span<const std::byte>> c = Next();
      if (!c.ok()) return c.status();
      if (c->empty()) return absl::OkStatus();
    }
  }

  // Releases the held buffer (before the pools go away).
  void Release() { current_.reset(); }

  double wait_s() const { return wait_s_; }

 private:
  Pipeline& p_;
  std::stop_token stop_;
  std::optional<Buffer> current_;
  double wait_s_ = 0;
};

absl::Status WithLayer(const UnpackOptions& o, const absl::Status& s) {
  std::string name = !o.layer_name.empty() ? o.layer_name : o.expected_digest.value_or("");
  if (name.empty()) name = "(unnamed)";
  return absl::Status(s.code(), absl::StrCat("layer ", name, ": ", s.message()));
}

// Creates `dest` (returns true) or checks that it is an empty directory (returns false).
absl::StatusOr<bool> PrepareDest(const std::string& dest) {
  struct stat st;
  if (::lstat(dest.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("destination ", dest, " exists and is not a directory"));
    }
    std::error_code ec;
    std::filesystem::directory_iterator it(dest, ec);
    if (ec) return absl::InternalError(absl::StrCat("listing ", dest, ": ", ec.message()));
    if (it != std::filesystem::directory_iterator()) {
      return absl::FailedPreconditionError(absl::StrCat("destination ", dest, " is not empty"));
    }
    return false;
  }
  if (errno != ENOENT) return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", dest));
  if (::mkdir(dest.c_str(), 0755) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mkdir ", dest));
  }
  return true;
}

// Undoes this call's output: removes `dest` if this call created it, else empties it.
absl::Status CleanDest(const std::string& dest, bool created) {
  std::error_code ec;
  if (created) {
    std::filesystem::remove_all(dest, ec);
    if (ec) return absl::InternalError(absl::StrCat("removing ", dest, ": ", ec.message()));
    return absl::OkStatus();
  }
  std::vector<std::filesystem::path> children;
  for (std::filesystem::directory_iterator it(dest, ec), end; !ec && it != end; it.increment(ec)) {
    children.push_back(it->path());
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", dest, ": ", ec.message()));
  for (const auto& child : children) {
    std::filesystem::remove_all(child, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("removing ", child.string(), ": ", ec.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDigest(std::string_view what, const std::optional<std::string>& expected,
                         const std::string& got) {
  if (!expected || *expected == got) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat(ToAbsl(what), " mismatch: expected ", *expected, ", got ", got));
}

// Runs the pipeline into an existing, empty `dest`. Leaves partial output on error.
absl::StatusOr<LayerTiming> RunPipeline(ByteSource& source, const std::string& dest,
                                        const UnpackOptions& options, Clock::time_point start) {
  Pipeline p(options);
  std::stop_callback on_cancel(options.stop, [&p] { p.abort.request_stop(); });
  QueueChunkSource chunks(p);

  ExtractOptions eo;
  eo.userxattr = options.userxattr;
  eo.max_entries = options.limits.max_entries;
  eo.writer_threads = options.writer_threads;
  eo.stop = p.abort.get_token();

  absl::StatusOr<ExtractStats> stats;
  absl::Status drained;
  double extract_s = 0;
  {
    std::jthread reader([&] { ReadStage(p, source); });
    std::jthread decoder([&] { DecodeStage(p).Run(); });
    std::jthread hasher([&] { HashStage(p); });
    {
      ScopedTimer t(extract_s);
      stats = ExtractTar(chunks, dest, eo);
      if (stats.ok()) drained = chunks.Drain();
    }
    if (!stats.ok() || !drained.ok()) p.abort.request_stop();
    chunks.Release();
    reader.join();
    decoder.join();
    hasher.join();
  }

  // The root cause first: cancellation, then a failed stage (whose error the extractor only
  // saw as a failed read), then the extractor's own error.
  if (options.stop.stop_requested()) return absl::CancelledError("unpack cancelled");
  if (absl::Status s = p.Error(); !s.ok()) return s;
  if (!stats.ok()) return stats.status();
  if (!drained.ok()) return drained;

  LayerTiming t;
  t.layer = options.layer_name;
  t.codec = std::string(CodecName(p.codec));
  double verify_s = p.read_hash_s + p.diff_hash_s;
  Clock::time_point verify_start = Clock::now();
  t.digest = p.compressed_hash.Finish();
  t.diff_id = p.diff_hash.Finish();
  if (absl::Status s = CheckDigest("compressed digest", options.expected_digest, t.digest);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckDigest("diffID", options.expected_diff_id, t.diff_id); !s.ok()) {
    return s;
  }
  verify_s += SecondsSince(verify_start);

  t.bytes_in = p.bytes_in;
  t.bytes_out = p.bytes_out;
  t.entries = stats->entries;
  t.file_bytes = stats->file_bytes;
  t.threads = 4 + stats->threads;  // reader, decoder, hasher, caller (+ writers)
  t.read = p.read;
  t.decode = p.decode;
  // ExtractTar's parse time includes waiting on the chunk source.
  t.extract.wait_s = chunks.wait_s();
  t.extract.busy_s = std::max(
      0.0, std::min(extract_s, stats->parse.busy_s + stats->parse.wait_s) - chunks.wait_s());
  t.write = stats->write;
  t.verify.busy_s = verify_s;
  t.total_s = SecondsSince(start);
  return t;
}

}  // namespace

absl::StatusOr<LayerTiming> UnpackLayer(ByteSource& source, const std::string& dest,
                                        const UnpackOptions& options) {
  Clock::time_point start = Clock::now();
  for (const auto* d : {&options.expected_digest, &options.expected_diff_id}) {
    if (!d->has_value()) continue;
    if (absl::StatusOr<std::string> ok = ParseDigest(**d); !ok.ok()) {
      return WithLayer(options, ok.status());
    }
  }
  absl::StatusOr<bool> created = PrepareDest(dest);
  if (!created.ok()) return WithLayer(options, created.status());

  absl::StatusOr<LayerTiming> result = RunPipeline(source, dest, options, start);
  if (result.ok()) return result;

  absl::Status error = WithLayer(options, result.status());
  if (absl::Status clean = CleanDest(dest, *created); !clean.ok()) {
    // Never swallow a cleanup failure: the caller must know output may remain.
    return absl::Status(error.code(),
                        absl::StrCat(error.message(), "; cleanup failed: ", clean.message()));
  }
  return error;
}

}  // namespace zsnap::unpack
