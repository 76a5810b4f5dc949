#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/unpack/codec_test_util.h"
#include "unpack/gzip_decoder.h"

namespace zsnap::unpack {
namespace {

using testing::DecodeAll;
using testing::GzipMember;
using testing::GzipMultiMember;
using ::testing::HasSubstr;
using testing::MakePayload;

std::unique_ptr<Decoder> NewGzip() {
  auto d = GzipDecoder::Create();
  EXPECT_TRUE(d.ok());
  return *std::move(d);
}

TEST(GzipDecoderTest, SingleMemberRoundTrip) {
  std::string data = MakePayload(3 << 20);
  auto out = DecodeAll(*NewGzip(), GzipMember(data));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, data);
}

TEST(GzipDecoderTest, TinyChunksBothSides) {
  std::string data = MakePayload(200'000, 7);
  std::string gz = GzipMultiMember(data, 50'000);
  for (auto [in, out] : {std::pair{1, 1}, {1, 4096}, {7, 3}, {4096, 1}, {65536, 13}}) {
    auto got = DecodeAll(*NewGzip(), gz, in, out);
    ASSERT_TRUE(got.ok()) << got.status() << " in=" << in << " out=" << out;
    EXPECT_EQ(*got, data) << " in=" << in << " out=" << out;
  }
}

TEST(GzipDecoderTest, MultiMemberAsPigzProduces) {
  std::string data = MakePayload(5 << 20, 3);
  // 128 KiB members, pigz's default block size with --independent.
  auto out = DecodeAll(*NewGzip(), GzipMultiMember(data, 128 << 10), 1 << 20, 1 << 20);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, data);
}

TEST(GzipDecoderTest, EmptyMembersAndHeaderFields) {
  std::string gz =
      GzipMember("") + GzipMember("abc", 6, "name.tar") + GzipMember("") + GzipMember("def", 0);
  auto out = DecodeAll(*NewGzip(), gz, 3, 2);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "abcdef");
}

TEST(GzipDecoderTest, NotGzipIsInvalidArgument) {
  auto out = DecodeAll(*NewGzip(), "this is not gzip at all");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("not a gzip stream"));
}

TEST(GzipDecoderTest, EmptyInputIsError) {
  auto out = DecodeAll(*NewGzip(), "");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(out.status().message(), HasSubstr("empty"));
}

TEST(GzipDecoderTest, TruncatedAnywhereIsDataLoss) {
  std::string gz = GzipMember(MakePayload(100'000));
  for (size_t cut : {size_t{1}, size_t{5}, size_t{10}, gz.size() / 2, gz.size() - 8, gz.size() - 4,
                     gz.size() - 1}) {
    auto out = DecodeAll(*NewGzip(), gz.substr(0, cut));
    EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << cut << " " << out.status();
    EXPECT_THAT(out.status().message(), HasSubstr("truncated")) << cut;
  }
}

TEST(GzipDecoderTest, TruncatedSecondMember) {
  std::string second = GzipMember("second");
  std::string gz = GzipMember("first") + second.substr(0, 12);
  auto out = DecodeAll(*NewGzip(), gz);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("member 2"));
}

TEST(GzipDecoderTest, CrcMismatchIsDataLoss) {
  std::string gz = GzipMember(MakePayload(10'000));
  gz[gz.size() - 6] ^= 0x01;  // CRC32
  auto out = DecodeAll(*NewGzip(), gz);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("CRC32"));
}

TEST(GzipDecoderTest, IsizeMismatchIsDataLoss) {
  std::string gz = GzipMember(MakePayload(10'000));
  gz[gz.size() - 2] ^= 0x01;  // ISIZE
  auto out = DecodeAll(*NewGzip(), gz);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << out.status();
}

TEST(GzipDecoderTest, CorruptDeflateDataIsDataLoss) {
  std::string gz = GzipMember(MakePayload(100'000));
  for (size_t i = 20; i < 60; ++i) gz[i] = static_cast<char>(0xff);
  auto out = DecodeAll(*NewGzip(), gz);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << out.status();
}

TEST(GzipDecoderTest, TrailingGarbageIsError) {
  for (std::string tail : {std::string("garbage!"), std::string(512, '\0'), std::string("x")}) {
    auto out = DecodeAll(*NewGzip(), GzipMember("payload") + tail);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << out.status();
    // A one-byte tail cannot be told apart from a truncated member header.
    EXPECT_THAT(out.status().message(),
                ::testing::AnyOf(HasSubstr("not a gzip member"), HasSubstr("truncated")));
  }
}

}  // namespace
}  // namespace zsnap::unpack
