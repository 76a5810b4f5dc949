// Decoder: a streaming decompressor with caller-owned buffers (push input, pull output), so
// the pipeline decodes straight from pooled input buffers into pooled output buffers with
// no intermediate copies. Implementations: gzip (ISA-L, multi-member), zstd (multi-frame,
// skippable frames, bounded window) and plain (a copy).
//
// Driving loop (see unpack.cc):
//   for each input chunk: while input remains: Decode(in, out); advance both by the result
//   at end of input:      Decode({}, out) until it produces nothing; then Finish()
// Decode never needs more than a non-empty `out` to make progress; it returns having
// consumed all input or filled all output (or both).
//
// Errors: InvalidArgument when the stream is not of the codec at all (bad magic), DataLoss
// for corrupt or truncated data and checksum mismatches, ResourceExhausted when a limit
// (zstd window) is exceeded. Messages say what is wrong and at which compressed offset.
//
// Thread safety: a Decoder is used by one thread at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "unpack/unpack.h"

namespace zsnap::unpack {

class Decoder {
 public:
  struct Progress {
    size_t consumed = 0;  // input bytes used
    size_t produced = 0;  // output bytes written
  };

  virtual ~Decoder() = default;

  virtual absl::StatusOr<Progress> Decode(std::span<const std::byte> in,
                                          std::span<std::byte> out) = 0;
  // Called once the input is exhausted and output drained: OK if the stream ended on a
  // member/frame boundary, DataLoss if it is truncated or was empty (for gzip/zstd).
  virtual absl::Status Finish() = 0;
  virtual Codec codec() const = 0;
};

// "gzip", "zstd", "plain" ("detect" for kDetect).
std::string_view CodecName(Codec codec);

// Magic sniffing as containerd's compression.DetectCompression: 1f 8b 08 -> gzip, 28 b5 2f fd
// (or a skippable frame, given 8 bytes) -> zstd, anything else (including a prefix too short
// to tell) -> plain. Looks at most at the first 8 bytes.
Codec DetectCodec(std::span<const std::byte> prefix);

// A decoder for `codec` (not kDetect: detect first) honouring `limits`.
absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(Codec codec, const UnpackLimits& limits);

}  // namespace zsnap::unpack
