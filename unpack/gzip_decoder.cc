#include "unpack/gzip_decoder.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace zsnap::unpack {
namespace {

// isal_inflate counts in uint32_t; feed it at most this much per call.
constexpr size_t kMaxChunk = std::numeric_limits<uint32_t>::max() / 2;

const char* IsalErrorName(int code) {
  switch (code) {
    case ISAL_INVALID_BLOCK:
      return "invalid deflate block";
    case ISAL_INVALID_SYMBOL:
      return "invalid deflate symbol";
    case ISAL_INVALID_LOOKBACK:
      return "invalid lookback distance";
    case ISAL_INVALID_WRAPPER:
      return "invalid gzip header";
    case ISAL_UNSUPPORTED_METHOD:
      return "unsupported compression method";
    case ISAL_INCORRECT_CHECKSUM:
      return "CRC32/ISIZE trailer mismatch";
    case ISAL_NEED_DICT:
      return "preset dictionary required";
  }
  return "unknown ISA-L error";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> GzipDecoder::Create() {
  return std::unique_ptr<Decoder>(new GzipDecoder());
}

GzipDecoder::GzipDecoder() : state_(std::make_unique<inflate_state>()) {
  isal_inflate_init(state_.get());
  isal_gzip_header_init(&header_);  // NULL name/extra/comment buffers: skip those fields
  state_->hist_bits = 0;            // full 32 KiB window
}

void GzipDecoder::StartMember() {
  isal_inflate_reset(state_.get());
  isal_gzip_header_init(&header_);
  state_->hist_bits = 0;
  header_done_ = false;
}

absl::Status GzipDecoder::InflateError(int code, bool in_header) const {
  if (code == ISAL_INVALID_WRAPPER && members_done_ > 0) {
    return absl::DataLossError(absl::StrCat("gzip: trailing data after member ", members_done_,
                                            " at compressed offset ", member_start_,
                                            " is not a gzip member"));
  }
  const char* name = IsalErrorName(code);
  if (in_header && code == ISAL_INCORRECT_CHECKSUM) name = "gzip header CRC16 mismatch";
  std::string what = absl::StrCat("gzip: ", name, " in member ", members_done_ + 1,
                                  " (starting at compressed offset ", member_start_,
                                  ", error near offset ", total_in_, ")");
  if (code == ISAL_INVALID_WRAPPER && members_done_ == 0 && member_start_ == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a gzip stream"));
  }
  return absl::DataLossError(what);
}

absl::StatusOr<Decoder::Progress> GzipDecoder::Decode(std::span<const std::byte> in,
                                                      std::span<std::byte> out) {
  Progress p;
  while (true) {
    if (state_->block_state == ISAL_BLOCK_FINISH) {
      // The member is complete and its trailer verified: a new one may follow.
      if (in_member_) {
        ++members_done_;
        in_member_ = false;
      }
      if (p.consumed == in.size()) return p;
      StartMember();
      member_start_ = total_in_;
    }
    size_t in_n = std::min(in.size() - p.consumed, kMaxChunk);
    size_t out_n = std::min(out.size() - p.produced, kMaxChunk);
    if (out_n == 0) return p;
    // ISA-L takes non-const pointers but does not write through next_in.
    state_->next_in =
        const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(in.data() + p.consumed));
    state_->avail_in = static_cast<uint32_t>(in_n);
    if (!header_done_) {
      // The header is parsed by isal_read_gzip_header, which resumes correctly across input
      // boundaries; isal_inflate's own ISAL_GZIP header path rejects a valid FHCRC header
      // split over two calls (ISA-L 2.30). Then inflate checks only the trailer.
      if (in_n == 0) return p;
      in_member_ = true;
      int rc = isal_read_gzip_header(state_.get(), &header_);
      size_t used = in_n - state_->avail_in;
      p.consumed += used;
      total_in_ += used;
      if (rc == ISAL_END_INPUT) continue;
      if (rc != ISAL_DECOMP_OK) return InflateError(rc, /*in_header=*/true);
      header_done_ = true;
      state_->crc_flag = ISAL_GZIP_NO_HDR_VER;  // verify CRC32 + ISIZE after the data
      continue;
    }
    state_->next_out = reinterpret_cast<uint8_t*>(out.data() + p.produced);
    state_->avail_out = static_cast<uint32_t>(out_n);
    if (in_n > 0) in_member_ = true;
    int rc = isal_inflate(state_.get());
    size_t used = in_n - state_->avail_in;
    size_t made = out_n - state_->avail_out;
    p.consumed += used;
    p.produced += made;
    total_in_ += used;
    if (rc != ISAL_DECOMP_OK) return InflateError(rc, /*in_header=*/false);
    if (state_->block_state == ISAL_BLOCK_FINISH) continue;
    if (used == 0 && made == 0) return p;  // needs more input or more output space
  }
}

absl::Status GzipDecoder::Finish() {
  if (in_member_) {
    return absl::DataLossError(absl::StrCat("gzip: truncated stream: member ", members_done_ + 1,
                                            " starting at compressed offset ", member_start_,
                                            " ends at offset ", total_in_, " before its trailer"));
  }
  if (members_done_ == 0) return absl::DataLossError("gzip: empty stream (no gzip member)");
  return absl::OkStatus();
}

}  // namespace zsnap::unpack
