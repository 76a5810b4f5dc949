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

// What a layer's media type says about its bytes. As in containerd's applier, only kPlain is
// binding (the bytes are the tar stream, no decompression); kDetect, kGzip and kZstd all mean
// "decompress", and the decoder is chosen from the magic bytes (containerd's
// compression.DecompressStream), so a zstd blob labelled +gzip, a plain tar labelled +zstd
// or a gzip blob labelled as a docker plain tar all apply.
enum class Codec { kDetect, kPlain, kGzip, kZstd };

// Media type -> Codec, containerd's images.DiffCompression: OCI layer (and nondistributable)
// types -> kGzip/kZstd by their last sorted '+' extension, else kPlain; docker rootfs.diff.tar
// (and foreign) -> kDetect, .tar.gzip -> kGzip, either with a '+' extension -> kPlain.
// Anything else (manifests, configs, unknown types) is InvalidArgument, as containerd finds
// no stream processor for it; so is an encrypted layer. "" -> kDetect (the CLI's default).
absl::StatusOr<Codec> CodecForMediaType(std::string_view media_type);

struct UnpackLimits {
  uint64_t max_uncompressed_bytes = 64ull << 30;  // sum of tar stream bytes
  uint64_t max_entries = 10'000'000;
  // Largest zstd window (ZSTD_d_windowLogMax): 29 = 512 MiB, containerd's limit (its zstd
  // decoder, klauspost/compress zstd, defaults WithDecoderMaxWindow to MaxWindowSize =
  // 1 << 29). Decoder memory is at most the window a frame declares plus ~0.5 MiB.
  int zstd_window_log_max = 29;
};

struct UnpackOptions {
  Codec codec = Codec::kDetect;  // from CodecForMediaType; only kPlain skips the magic check
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
