// ZstdDecoder: streaming zstd over ZSTD_decompressStream. Concatenated frames and skippable
// frames are accepted (zstd's streaming API handles both); the window a frame may demand is
// capped by ZSTD_d_windowLogMax, so a hostile header cannot make us allocate more than
// 2^window_log_max bytes (plus the ~0.5 MiB of tables and block buffers); a frame is given the
// window it declares (the content size, for a single-segment frame), not the limit. A stream that ends inside a frame is an error (zstd
// examples/streaming_decompression.c).
//
// Thread safety: one thread at a time.
#pragma once

#include <zstd.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "unpack/decoder.h"

namespace zsnap::unpack {

class ZstdDecoder final : public Decoder {
 public:
  // window_log_max: ZSTD_WINDOWLOG_ABSOLUTEMIN..ZSTD_WINDOWLOG_MAX (InvalidArgument otherwise).
  static absl::StatusOr<std::unique_ptr<Decoder>> Create(int window_log_max);

  absl::StatusOr<Progress> Decode(std::span<const std::byte> in, std::span<std::byte> out) override;
  absl::Status Finish() override;
  Codec codec() const override { return Codec::kZstd; }

  // Bytes the decoder holds now (ZSTD_sizeof_DCtx): its tables plus the window buffer sized
  // for the current frame, so never more than 2^window_log_max + ~0.5 MiB.
  size_t memory_bytes() const { return ZSTD_sizeof_DCtx(dctx_.get()); }

 private:
  struct DctxFree {
    void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
  };
  ZstdDecoder(ZSTD_DCtx* dctx, int window_log_max) : dctx_(dctx), window_log_max_(window_log_max) {}

  std::unique_ptr<ZSTD_DCtx, DctxFree> dctx_;
  int window_log_max_;
  size_t last_hint_ = 0;   // last ZSTD_decompressStream result: 0 = at a frame boundary
  uint64_t total_in_ = 0;  // compressed bytes consumed
  uint64_t frame_start_ = 0;
};

}  // namespace zsnap::unpack
