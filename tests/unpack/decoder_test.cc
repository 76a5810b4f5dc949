#include "unpack/decoder.h"

#include <gtest/gtest.h>

#include "tests/unpack/codec_test_util.h"

namespace zsnap::unpack {
namespace {

using testing::AsBytes;
using testing::DecodeAll;

TEST(DecoderTest, DetectCodecByMagic) {
  EXPECT_EQ(DetectCodec(AsBytes(testing::GzipMember("x"))), Codec::kGzip);
  EXPECT_EQ(DetectCodec(AsBytes(testing::ZstdFrame("x"))), Codec::kZstd);
  EXPECT_EQ(DetectCodec(AsBytes("ustar-ish")), Codec::kPlain);
  EXPECT_EQ(DetectCodec(AsBytes("")), Codec::kPlain);
  EXPECT_EQ(DetectCodec(AsBytes("\x1f")), Codec::kPlain);
  EXPECT_EQ(DetectCodec(AsBytes("\x28\xb5\x2f")), Codec::kPlain);
  // containerd's gzipMagic is three bytes (1f 8b 08: deflate); its skippable-frame matcher
  // wants 8.
  EXPECT_EQ(DetectCodec(AsBytes(std::string("\x1f\x8b", 2))), Codec::kPlain);
  EXPECT_EQ(DetectCodec(AsBytes(std::string("\x1f\x8b\x07", 3))), Codec::kPlain);
  EXPECT_EQ(DetectCodec(AsBytes(std::string("\x1f\x8b\x08", 3))), Codec::kGzip);
  EXPECT_EQ(DetectCodec(AsBytes(std::string("\x50\x2a\x4d\x18\0\0\0", 7))), Codec::kPlain);
  EXPECT_EQ(DetectCodec(AsBytes(std::string("\x5f\x2a\x4d\x18\0\0\0\0", 8))), Codec::kZstd);
  // A zstd stream may open with a skippable frame (magic 0x184D2A5?).
  EXPECT_EQ(DetectCodec(AsBytes(testing::ZstdSkippableFrame("m", 7) + testing::ZstdFrame("x"))),
            Codec::kZstd);
}

TEST(DecoderTest, FactoryMakesEachCodec) {
  UnpackLimits limits;
  for (Codec c : {Codec::kPlain, Codec::kGzip, Codec::kZstd}) {
    auto d = MakeDecoder(c, limits);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ((*d)->codec(), c);
  }
  EXPECT_FALSE(MakeDecoder(Codec::kDetect, limits).ok());
}

TEST(DecoderTest, PlainPassesThrough) {
  auto d = MakeDecoder(Codec::kPlain, UnpackLimits{});
  ASSERT_TRUE(d.ok());
  std::string data = testing::MakePayload(100'000);
  auto out = DecodeAll(**d, data, 999, 77);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, data);
}

TEST(DecoderTest, CodecNames) {
  EXPECT_EQ(CodecName(Codec::kGzip), "gzip");
  EXPECT_EQ(CodecName(Codec::kZstd), "zstd");
  EXPECT_EQ(CodecName(Codec::kPlain), "plain");
}

// containerd images/mediatypes.go DiffCompression, case by case.
TEST(DecoderTest, CodecForMediaType) {
  auto is = [](std::string_view mt, Codec want) {
    auto c = CodecForMediaType(mt);
    return c.ok() && *c == want;
  };
  EXPECT_TRUE(is("application/vnd.oci.image.layer.v1.tar", Codec::kPlain));
  EXPECT_TRUE(is("application/vnd.oci.image.layer.v1.tar+gzip", Codec::kGzip));
  EXPECT_TRUE(is("application/vnd.oci.image.layer.v1.tar+zstd", Codec::kZstd));
  EXPECT_TRUE(is("application/vnd.oci.image.layer.v1.tar+foo", Codec::kPlain));
  // Extensions sorted, the last one counts.
  EXPECT_TRUE(is("application/vnd.oci.image.layer.v1.tar+zstd+gzip", Codec::kZstd));
  EXPECT_TRUE(is("application/vnd.oci.image.layer.v1.tar+gzip+foo", Codec::kGzip));
  EXPECT_TRUE(is("application/vnd.oci.image.layer.v1.tar+gzip+zz", Codec::kPlain));
  EXPECT_TRUE(is("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Codec::kGzip));
  EXPECT_TRUE(is("application/vnd.oci.image.layer.nondistributable.v1.tar", Codec::kPlain));
  EXPECT_TRUE(is("application/vnd.docker.image.rootfs.diff.tar.gzip", Codec::kGzip));
  EXPECT_TRUE(is("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Codec::kGzip));
  // Docker's uncompressed types may be compressed anyway: detect.
  EXPECT_TRUE(is("application/vnd.docker.image.rootfs.diff.tar", Codec::kDetect));
  EXPECT_TRUE(is("application/vnd.docker.image.rootfs.foreign.diff.tar", Codec::kDetect));
  // Wrapped docker types go to the tar reader as they are.
  EXPECT_TRUE(is("application/vnd.docker.image.rootfs.diff.tar+x", Codec::kPlain));
  EXPECT_TRUE(is("application/vnd.docker.image.rootfs.diff.tar.gzip+x", Codec::kPlain));
  EXPECT_TRUE(is("", Codec::kDetect));  // the CLI without --media-type
  // No processor in containerd: refused.
  for (const char* mt : {"application/octet-stream", "application/vnd.oci.image.manifest.v1+json",
                         "application/vnd.oci.image.config.v1+json",
                         "application/vnd.docker.image.rootfs.diff.tar.zstd",
                         "application/vnd.oci.image.layer.v1.tar.gzip",
                         "Application/vnd.oci.image.layer.v1.tar+gzip",
                         "application/vnd.in-toto+json", "text/plain"}) {
    EXPECT_EQ(CodecForMediaType(mt).status().code(), absl::StatusCode::kInvalidArgument) << mt;
  }
  EXPECT_EQ(
      CodecForMediaType("application/vnd.oci.image.layer.v1.tar+gzip+encrypted").status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodecForMediaType("application/vnd.oci.image.layer.v1.tar+encrypted").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace zsnap::unpack
