#include "unpack/decoder.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "unpack/gzip_decoder.h"
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

Codec DetectCodec(std::span<const std::byte> prefix) {
  auto at = [&](size_t i) { return std::to_integer<unsigned>(prefix[i]); };
  if (prefix.size() >= 2 && at(0) == 0x1f && at(1) == 0x8b) return Codec::kGzip;
  if (prefix.size() >= 4 && at(0) == 0x28 && at(1) == 0xb5 && at(2) == 0x2f && at(3) == 0xfd) {
    return Codec::kZstd;
  }
  if (prefix.size() >= 4 && (at(0) & 0xf0) == 0x50 && at(1) == 0x2a && at(2) == 0x4d &&
      at(3) == 0x18) {
    return Codec::kZstd;  // a skippable frame opening a zstd stream
  }
  return Codec::kPlain;
}

absl::StatusOr<Codec> CodecForMediaType(std::string_view media_type) {
  if (media_type.empty()) return Codec::kDetect;
  auto ends_with = [&](std::string_view s) { return media_type.ends_with(s); };
  auto has = [&](std::string_view s) { return media_type.find(s) != std::string_view::npos; };
  bool layer = has(".layer.") || has(".rootfs.");
  if (layer && has("encrypted")) {
    return absl::InvalidArgumentError(absl::StrCat("media type ", std::string(media_type),
                                                   ": encrypted layers are not supported"));
  }
  if (layer) {
    if (ends_with("+gzip") || ends_with(".tar.gzip")) return Codec::kGzip;
    if (ends_with("+zstd") || ends_with(".tar.zstd")) return Codec::kZstd;
    if (ends_with(".tar")) return Codec::kPlain;
    return Codec::kDetect;
  }
  if (ends_with("+json") || has(".manifest.") || has(".index.") || has(".config.")) {
    return absl::InvalidArgumentError(
        absl::StrCat("media type ", std::string(media_type), " is not a layer"));
  }
  return Codec::kDetect;
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
