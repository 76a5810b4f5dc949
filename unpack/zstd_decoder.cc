#include "unpack/zstd_decoder.h"

#include <zstd_errors.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace zsnap::unpack {

absl::StatusOr<std::unique_ptr<Decoder>> ZstdDecoder::Create(int window_log_max) {
  ZSTD_bounds b = ZSTD_dParam_getBounds(ZSTD_d_windowLogMax);
  if (ZSTD_isError(b.error) || window_log_max < b.lowerBound || window_log_max > b.upperBound) {
    return absl::InvalidArgumentError(absl::StrCat("zstd: zstd_window_log_max=", window_log_max,
                                                   " out of range [", b.lowerBound, ", ",
                                                   b.upperBound, "]"));
  }
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  if (dctx == nullptr) return absl::ResourceExhaustedError("zstd: ZSTD_createDCtx failed");
  std::unique_ptr<Decoder> d(new ZstdDecoder(dctx, window_log_max));
  size_t rc = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, window_log_max);
  if (ZSTD_isError(rc)) {
    return absl::InternalError(absl::StrCat("zstd: setting windowLogMax: ", ZSTD_getErrorName(rc)));
  }
  return d;
}

absl::StatusOr<Decoder::Progress> ZstdDecoder::Decode(std::span<const std::byte> in,
                                                      std::span<std::byte> out) {
  ZSTD_inBuffer zin{in.data(), in.size(), 0};
  ZSTD_outBuffer zout{out.data(), out.size(), 0};
  // Loop so that a call returns only with the input used up or the output full, as the
  // Decoder contract promises; one ZSTD_decompressStream call may stop at a frame end.
  while (true) {
    if (last_hint_ == 0) frame_start_ = total_in_ + zin.pos;
    size_t before_in = zin.pos, before_out = zout.pos;
    size_t rc = ZSTD_decompressStream(dctx_.get(), &zout, &zin);
    if (ZSTD_isError(rc)) {
      total_in_ += zin.pos;
      ZSTD_ErrorCode code = ZSTD_getErrorCode(rc);
      std::string where = absl::StrCat(" in frame starting at compressed offset ", frame_start_);
      if (code == ZSTD_error_frameParameter_windowTooLarge) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "zstd: frame window exceeds the limit zstd_window_log_max=", window_log_max_, " (",
            (uint64_t{1} << window_log_max_) >> 20, " MiB)", where));
      }
      if (code == ZSTD_error_prefix_unknown && frame_start_ > 0) {
        return absl::DataLossError(absl::StrCat("zstd: trailing data at compressed offset ",
                                                frame_start_, " is not a zstd frame"));
      }
      if (code == ZSTD_error_prefix_unknown) {
        return absl::InvalidArgumentError("zstd: not a zstd stream (bad magic)");
      }
      return absl::DataLossError(
          absl::StrCat("zstd: corrupt data: ", ZSTD_getErrorName(rc), where));
    }
    bool progressed = zin.pos != before_in || zout.pos != before_out;
    // A call that neither read nor wrote reports the next frame's header size, not whether
    // the current frame is complete: keep the last real answer.
    if (!progressed) break;
    last_hint_ = rc;
    // Full output, or all input used with room left (zstd has then flushed all it can).
    if (zout.pos == zout.size || zin.pos == zin.size) break;
  }
  total_in_ += zin.pos;
  return Progress{zin.pos, zout.pos};
}

absl::Status ZstdDecoder::Finish() {
  if (total_in_ == 0) return absl::DataLossError("zstd: empty stream (no zstd frame)");
  if (last_hint_ != 0) {
    return absl::DataLossError(
        absl::StrCat("zstd: truncated stream: frame starting at compressed "
                     "offset ",
                     frame_start_, " is incomplete at offset ", total_in_));
  }
  return absl::OkStatus();
}

}  // namespace zsnap::unpack
