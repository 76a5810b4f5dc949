// ExtractTar: applies one uncompressed OCI layer tar stream to a directory, converting OCI
// whiteouts to overlayfs form exactly as containerd's archive.Apply with
// OverlayConvertWhiteout does (`.wh.<name>` -> 0/0 char device `<name>`,
// `.wh..wh..opq` -> xattr trusted.overlay.opaque=y, or user.overlay.opaque=y with userxattr).
//
// Tar headers are parsed by libarchive; what is hand-written here is the write side: every
// path is resolved inside `dest` (openat2 RESOLVE_IN_ROOT semantics, so `..`, absolute paths,
// symlinked parents and hardlinks cannot reach outside), later entries replace earlier ones,
// directory mtimes are fixed up after their children, and file data may be written by a pool
// of writer threads while ordering rules (parents before children, hardlink targets before
// links, replaced entries, directory mtimes last) are kept.
//
// Thread safety: one call per destination; calls for different destinations may run
// concurrently. The call owns its writer threads and joins them before returning.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stop_token>
#include <string>

#include "absl/status/statusor.h"
#include "unpack/timing.h"

namespace zsnap::unpack {

// Pull source of decoded tar bytes. Next() returns the next chunk, valid until the following
// Next() call; an empty span is the end of the stream. Errors (corrupt compressed input,
// cancellation) are returned as Status and abort the extraction.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  virtual absl::StatusOr<std::span<const std::byte>> Next() = 0;
};

struct ExtractOptions {
  bool userxattr = false;
  uint64_t max_entries = 10'000'000;
  int writer_threads = 0;  // 0 = choose from the CPU count; 1 = write inline
  std::stop_token stop;
};

struct ExtractStats {
  uint64_t entries = 0;
  uint64_t file_bytes = 0;
  StageTime parse;  // libarchive header parsing and data reads, incl. waiting on the source
  StageTime write;  // syscalls creating entries and writing data (summed over writers)
  int threads = 0;  // writer threads used
};

// Extracts into `dest`, which must exist. Does not remove partial output on error: the
// caller (UnpackLayer) owns `dest` and cleans it. Errors name the entry.
absl::StatusOr<ExtractStats> ExtractTar(ChunkSource& source, const std::string& dest,
                                        const ExtractOptions& options);

}  // namespace zsnap::unpack
