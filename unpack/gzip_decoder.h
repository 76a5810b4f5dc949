// GzipDecoder: streaming gzip over ISA-L's isal_inflate (~2-3x zlib's inflate speed).
// Accepts concatenated members (RFC 1952 section 2.2; pigz and `cat a.gz b.gz` produce
// them); each member's header is parsed and its CRC32 and ISIZE trailer are verified by
// ISA-L. Anything after a member that is not another complete member is an error: trailing
// garbage, a truncated member, an empty stream.
//
// Thread safety: one thread at a time.
#pragma once

#include <isa-l/igzip_lib.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "unpack/decoder.h"

namespace zsnap::unpack {

class GzipDecoder final : public Decoder {
 public:
  static absl::StatusOr<std::unique_ptr<Decoder>> Create();

  absl::StatusOr<Progress> Decode(std::span<const std::byte> in, std::span<std::byte> out) override;
  absl::Status Finish() override;
  Codec codec() const override { return Codec::kGzip; }

 private:
  GzipDecoder();
  void StartMember();
  absl::Status InflateError(int code, bool in_header) const;

  // ~100 KiB of tables and history: heap-allocated once per decoder.
  std::unique_ptr<inflate_state> state_;
  isal_gzip_header header_;
  bool header_done_ = false;   // the current member's header has been parsed
  bool in_member_ = false;     // bytes of the current member have been fed
  uint64_t members_done_ = 0;  // complete, verified members
  uint64_t member_start_ = 0;  // compressed offset where the current member began
  uint64_t total_in_ = 0;      // compressed bytes consumed so far
};

}  // namespace zsnap::unpack
