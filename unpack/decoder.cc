#include "unpack/decoder.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "unpack/gzip_decoder.h"
#include "unpack/posix_status.h"
#include "unpack/zstd_decoder.h"

namespace zsnap::unpack {
namespace {

// An uncompressed tar stream: bytes pass through with one memcpy (cheap next to parsing).
class PlainDecoder final : public Decoder {
 public:
  absl::StatusOr<Progress> Decode(std::span<const std::byte> in,
                                  std::span<std::byte> out) override {
    size_t n = std::min(in.size(), out.size());
    if (n > 0) std::memcpy(out.data(), in.data(), n);
    return Progress{n, n};
  }
  absl::Status Finish() override { return absl::OkStatus(); }
  Codec codec() const override { return Codec::kPlain; }
};

}  // namespace

std::string_view CodecName(Codec codec) {
  switch (codec) {
    case Codec::kDetect:
      return "detect";
    case Codec::kPlain:
      return "plain";
    case Codec::kGzip:
      return "gzip";
    case Codec::kZstd:
      return "zstd";
  }
  return "unknown";
}

// containerd archive/compression/compression.go DetectCompression: gzipMagic is 1f 8b 08
// (deflate, the only method gzip defines), zstdMatcher takes the frame magic, or a skippable
// frame magic (0x184D2A50..5F, little endian) once at least 8 bytes are there.
Codec DetectCodec(std::span<const std::byte> prefix) {
  auto at = [&](size_t i) { return std::to_integer<unsigned>(prefix[i]); };
  if (prefix.size() >= 3 && at(0) == 0x1f && at(1) == 0x8b && at(2) == 0x08) return Codec::kGzip;
  if (prefix.size() >= 4 && at(0) == 0x28 && at(1) == 0xb5 && at(2) == 0x2f && at(3) == 0xfd) {
    return Codec::kZstd;
  }
  if (prefix.size() >= 8 && (at(0) & 0xf0) == 0x50 && at(1) == 0x2a && at(2) == 0x4d &&
      at(3) == 0x18) {
    return Codec::kZstd;  // a skippable frame opening a zstd stream
  }
  return Codec::kPlain;
}

// containerd images/mediatypes.go DiffCompression (with parseMediaTypes: the base is what
// precedes the first '+', the '+' extensions are sorted and the last one counts), as
// diff/stream.go compressedHandler uses it for the applier (diff/apply/apply.go Apply ->
// diff.GetProcessor): "gzip", "zstd" and "unknown" all lead to compression.DecompressStream,
// which picks the decoder from the magic bytes whatever the label said; "" means the bytes
// go to the tar reader as they are; an error means no processor: the layer is refused.
absl::StatusOr<Codec> CodecForMediaType(std::string_view media_type) {
  // zsnap's own convenience (`zsnap unpack` without --media-type): detect. containerd never
  // applies a descriptor without a media type.
  if (media_type.empty()) return Codec::kDetect;
  const std::string mt(media_type);
  std::vector<absl::string_view> ext = absl::StrSplit(ToAbsl(media_type), '+');
  const absl::string_view base = ext.front();
  ext.erase(ext.begin());
  std::sort(ext.begin(), ext.end());
  // No stream processor for encrypted layers is configured (containerd needs imgcrypt's
  // ctd-decoder for them); containerd would feed the ciphertext to its tar reader and fail.
  if (std::find(ext.begin(), ext.end(), "encrypted") != ext.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("media type ", mt, ": encrypted layers are not supported"));
  }
  if (base == "application/vnd.docker.image.rootfs.diff.tar" ||
      base == "application/vnd.docker.image.rootfs.foreign.diff.tar") {
    // "may have been compressed but failed to use the correct media type": detect.
    return ext.empty() ? Codec::kDetect : Codec::kPlain;
  }
  if (base == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
      base == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") {
    return ext.empty() ? Codec::kGzip : Codec::kPlain;
  }
  if (base == "application/vnd.oci.image.layer.v1.tar" ||
      base == "application/vnd.oci.image.layer.nondistributable.v1.tar") {
    if (!ext.empty() && ext.back() == "gzip") return Codec::kGzip;
    if (!ext.empty() && ext.back() == "zstd") return Codec::kZstd;
    return Codec::kPlain;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "media type ", mt, " is not a layer containerd can apply (no processor for media-type)"));
}

absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(Codec codec, const UnpackLimits& limits) {
  switch (codec) {
    case Codec::kPlain:
      return std::make_unique<PlainDecoder>();
    case Codec::kGzip:
      return GzipDecoder::Create();
    case Codec::kZstd:
      return ZstdDecoder::Create(limits.zstd_window_log_max);
    case Codec::kDetect:
      break;
  }
  return absl::InvalidArgumentError("MakeDecoder: codec must be known (detect first)");
}

}  // namespace zsnap::unpack
