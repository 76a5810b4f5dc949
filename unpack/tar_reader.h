// TarReader: libarchive's tar reader (ustar, pax, GNU; no decompression filters: the input
// is already decoded) pulling from a ChunkSource through libarchive's read callback, so the
// chunks the pipeline hands over are parsed in place.
//
// Errors map to Status: the source's own error as is; a stream that ends inside an entry or
// a header is DataLoss ("truncated"); a malformed header is InvalidArgument; a stop request
// is Cancelled.
//
// Names are bytes, as Go's archive/tar treats them: libarchive converts PAX (UTF-8) names to
// the current locale's charset and fails in the "C" locale a daemon runs in, so the reader
// switches its own thread (uselocale, not the process) to C.UTF-8 while it lives.
//
// Ownership: borrows the source, which must outlive the reader. Not thread-safe: create,
// use and destroy it on one thread.
#pragma once

#include <locale.h>

#include <cstdint>
#include <span>
#include <stop_token>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "unpack/tar_extractor.h"

struct archive;
struct archive_entry;

namespace zsnap::unpack {

class TarReader {
 public:
  TarReader(ChunkSource& source, std::stop_token stop);
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // Reads the next header: true with entry() set, false at the end of the archive.
  absl::StatusOr<bool> Next();
  archive_entry* entry() const { return entry_; }

  // The current entry's next run of data at its file offset (offsets jump over the holes
  // of sparse files): true with `data` set, false at the end of the entry's data. `data`
  // stays valid until the next call.
  absl::StatusOr<bool> ReadBlock(std::span<const std::byte>& data, uint64_t& offset);

  // Pulls the source to its end (bytes after the end-of-archive marker), so a digest the
  // source computes covers the whole stream.
  absl::Status Drain();

  double busy_s() const { return busy_s_ - source_wait_s_; }  // parsing, excluding waits
  double source_wait_s() const { return source_wait_s_; }     // blocked in source.Next()

 private:
  static long ReadCallback(struct archive* a, void* self, const void** buffer);
  absl::Status ArchiveError(int r);

  ChunkSource& source_;
  std::stop_token stop_;
  locale_t utf8_ = nullptr;  // this thread's locale while the reader lives
  locale_t saved_locale_ = nullptr;
  struct archive* archive_ = nullptr;
  archive_entry* entry_ = nullptr;
  absl::Status open_status_;
  absl::Status source_status_;  // why the read callback failed, if it did
  bool source_eof_ = false;
  double busy_s_ = 0;
  double source_wait_s_ = 0;
};

}  // namespace zsnap::unpack
