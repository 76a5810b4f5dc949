#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/unpack/codec_test_util.h"
#include "unpack/zstd_decoder.h"

namespace zsnap::unpack {
namespace {

using testing::DecodeAll;
using ::testing::HasSubstr;
using testing::MakePayload;
using testing::ZstdFrame;
using testing::ZstdDeclaredWindow;
using testing::ZstdFrameWithWindow;
using testing::ZstdSkippableFrame;
using testing::ZstdWithWindowDescriptor;

std::unique_ptr<Decoder> NewZstd(int window_log_max = UnpackLimits{}.zstd_window_log_max) {
  auto d = ZstdDecoder::Create(window_log_max);
  EXPECT_TRUE(d.ok()) << d.status();
  return *std::move(d);
}

TEST(ZstdDecoderTest, SingleFrameRoundTrip) {
  std::string data = MakePayload(3 << 20);
  auto out = DecodeAll(*NewZstd(), ZstdFrame(data));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, data);
}

TEST(ZstdDecoderTest, MultiFrameAndSkippableFrames) {
  std::string a = MakePayload(300'000, 1), b = MakePayload(200'000, 2);
  std::string z = ZstdSkippableFrame("metadata", 3) + ZstdFrame(a) + ZstdSkippableFrame("") +
                  ZstdFrame("") + ZstdFrame(b, 19) + ZstdSkippableFrame("tail", 15);
  for (auto [in, out] : {std::pair{1 << 20, 1 << 20}, {1, 1}, {7, 4093}, {4096, 3}}) {
    auto got = DecodeAll(*NewZstd(), z, in, out);
    ASSERT_TRUE(got.ok()) << got.status() << " in=" << in << " out=" << out;
    EXPECT_EQ(*got, a + b);
  }
}

TEST(ZstdDecoderTest, OnlySkippableFrameIsEmptyOutput) {
  auto got = DecodeAll(*NewZstd(), ZstdSkippableFrame("x"));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "");
}

TEST(ZstdDecoderTest, NotZstdIsInvalidArgument) {
  auto got = DecodeAll(*NewZstd(), "definitely not zstd");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
}

TEST(ZstdDecoderTest, EmptyInputIsError) {
  auto got = DecodeAll(*NewZstd(), "");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
}

TEST(ZstdDecoderTest, TruncatedAnywhereIsDataLoss) {
  std::string z = ZstdFrame(MakePayload(500'000)) + ZstdFrame("second");
  for (size_t cut : {size_t{2}, size_t{6}, z.size() / 3, z.size() - 10, z.size() - 1}) {
    auto got = DecodeAll(*NewZstd(), z.substr(0, cut));
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << cut << " " << got.status();
    EXPECT_THAT(got.status().message(), HasSubstr("truncated")) << cut;
  }
}

TEST(ZstdDecoderTest, CorruptBlockIsDataLoss) {
  std::string z = ZstdFrame(MakePayload(200'000));
  for (size_t i = 40; i < 80; ++i) z[i] = static_cast<char>(z[i] ^ 0x5a);
  auto got = DecodeAll(*NewZstd(), z);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
}

TEST(ZstdDecoderTest, TrailingGarbageIsDataLoss) {
  auto got = DecodeAll(*NewZstd(), ZstdFrame("payload") + "garbage!");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr("not a zstd frame"));
}

TEST(ZstdDecoderTest, WindowAboveLimitIsRejected) {
  // A frame asking for a 2^24 window against a limit of 2^20.
  std::string z = ZstdFrameWithWindow(MakePayload(4 << 20), 24);
  auto got = DecodeAll(*NewZstd(20), z);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr("zstd_window_log_max=20"));
  // The same frame decodes under the default limit.
  EXPECT_TRUE(DecodeAll(*NewZstd(), z).ok());
}

TEST(ZstdDecoderTest, HandCraftedHugeWindowHeader) {
  // Frame header: magic, FHD=0 (no single-segment, no content size), window descriptor
  // exponent 31-10 -> 2 GiB window, then nothing. Must be refused before any allocation.
  std::string z("\x28\xb5\x2f\xfd\x00\xa8", 6);
  z += std::string(16, '\0');
  auto got = DecodeAll(*NewZstd(), z);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted) << got.status();
}

// Issue 12: containerd's zstd decoder (klauspost/compress zstd, framedec.go: a frame is
// refused only if its WindowSize > maxWindowSize, default MaxWindowSize = 1 << 29) applies
// layers compressed with zstd --long=28 or 29; zsnap refused anything above 128 MiB.
TEST(ZstdDecoderTest, WindowOf256MiBDecodesUnderTheDefaultLimit) {
  const std::string data = MakePayload(200'000);
  const std::string z = ZstdFrameWithWindow(data, 28);
  ASSERT_EQ(ZstdDeclaredWindow(z), uint64_t{1} << 28);
  std::unique_ptr<Decoder> d = NewZstd();
  auto got = DecodeAll(*d, z);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, data);
  // Memory follows the declared window, plus well under 1 MiB of tables and block buffers.
  EXPECT_LE(static_cast<ZstdDecoder&>(*d).memory_bytes(), (size_t{1} << 28) + (1 << 20));
}

TEST(ZstdDecoderTest, MemoryFollowsTheDeclaredWindowNotTheLimit) {
  const std::string data = MakePayload(200'000);
  std::unique_ptr<Decoder> d = NewZstd();
  ASSERT_TRUE(DecodeAll(*d, ZstdFrameWithWindow(data, 20)).ok());
  EXPECT_LE(static_cast<ZstdDecoder&>(*d).memory_bytes(), (size_t{1} << 20) + (1 << 20));
}

// Exactly containerd's 512 MiB is accepted; one mantissa step above (576 MiB) is refused
// before the window is allocated, naming the limit.
TEST(ZstdDecoderTest, ContainerdWindowLimitIsTheBoundary) {
  const std::string data = MakePayload(50'000);
  const std::string z = ZstdFrameWithWindow(data, 20);
  const std::string at_limit = ZstdWithWindowDescriptor(z, 29 - 10, 0);
  ASSERT_EQ(ZstdDeclaredWindow(at_limit), uint64_t{1} << 29);
  auto ok = DecodeAll(*NewZstd(), at_limit);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, data);

  const std::string above = ZstdWithWindowDescriptor(z, 29 - 10, 1);
  ASSERT_EQ(ZstdDeclaredWindow(above), (uint64_t{1} << 29) + (uint64_t{1} << 26));
  std::unique_ptr<Decoder> d = NewZstd();
  auto got = DecodeAll(*d, above);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted) << got.status();
  EXPECT_THAT(got.status().message(),
              HasSubstr("frame window exceeds the limit zstd_window_log_max=29 (512 MiB)"));
  EXPECT_LE(static_cast<ZstdDecoder&>(*d).memory_bytes(), size_t{1} << 20);
}

// A single-segment frame's window is its content size: one declaring 1 GiB of content is held
// to the same limit (klauspost would allow it up to its 64 GiB maxDecodedSize; see README).
TEST(ZstdDecoderTest, SingleSegmentFrameAboveTheLimitIsRefused) {
  // FHD 0xa0: single segment, 4-byte content size; content size 2^30; then filler.
  std::string z("\x28\xb5\x2f\xfd\xa0\x00\x00\x00\x40", 9);
  z += std::string(16, '\0');
  auto got = DecodeAll(*NewZstd(), z);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted) << got.status();
}

TEST(ZstdDecoderTest, WindowLimitOutOfRange) {
  EXPECT_EQ(ZstdDecoder::Create(3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ZstdDecoder::Create(99).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace zsnap::unpack
