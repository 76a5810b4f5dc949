// The layer unpacker's entry point: one compressed (or plain) OCI layer stream in, one
// directory in overlayfs form out (whiteouts as 0/0 char devices, opaque dirs as xattrs).
//
// Stages run concurrently, joined by bounded queues of pooled buffers:
//   read -> decode (+ SHA-256 of the compressed stream) -> tar parse (+ diffID) -> write
// so memory is bounded by construction whatever the layer size.
//
// Ownership: the caller owns the source and the destination directory. On any error the
// entries this call created under `dest` are removed and the Status names the layer and,
// where there is one, the tar entry.
//
// Thread safety: UnpackLayer may be called concurrently for different destinations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stop_token>
#include <string>

#include "absl/status/statusor.h"
#include "unpack/timing.h"

namespace zsnap::unpack {

// A pull source of compressed layer bytes: a file, stdin, or a registry body.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Fills up to buf.size() bytes; returns the count, 0 at end of stream.
  virtual absl::StatusOr<size_t> Read(std::span<std::byte> buf) = 0;
  // Requests re-sent after a failure so far (a registry body resumed with Range); 0 for
  // sources that never retry.
  virtual int retries() const { return 0; }
};

enum class Codec { kDetect, kPlain, kGzip, kZstd };

// Media type -> codec ("application/vnd.oci.image.layer.v1.tar+gzip" etc.); kDetect for
// empty or unknown, InvalidArgument for a media type that is not a layer.
absl::StatusOr<Codec> CodecForMediaType(std::string_view media_type);

struct UnpackLimits {
  uint64_t max_uncompressed_bytes = 64ull << 30;  // sum of tar stream bytes
  uint64_t max_entries = 10'000'000;
  int zstd_window_log_max = 27;  // 128 MiB, zstd's own default limit
};

struct UnpackOptions {
  Codec codec = Codec::kDetect;
  std::string layer_name;                    // for messages, e.g. the compressed digest
  std::optional<std::string> expected_digest;   // "sha256:<hex>" of the compressed stream
  std::optional<std::string> expected_diff_id;  // "sha256:<hex>" of the tar stream
  UnpackLimits limits;
  int writer_threads = 0;  // 0 = choose from the CPU count
  bool userxattr = false;  // opaque marker as user.overlay.opaque instead of trusted.
  std::stop_token stop;    // cancellation: stop requested -> Cancelled, output removed
};

// Unpacks `source` into `dest` (created if missing; must be empty otherwise).
absl::StatusOr<LayerTiming> UnpackLayer(ByteSource& source, const std::string& dest,
                                        const UnpackOptions& options);

}  // namespace zsnap::unpack
