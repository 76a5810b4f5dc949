#include "unpack/digest.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unpack/codec_test_util.h"

namespace zsnap::unpack {
namespace {

using testing::AsBytes;

TEST(DigestTest, KnownVectors) {
  EXPECT_EQ(Sha256Digest(AsBytes("")),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Digest(AsBytes("abc")),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(DigestTest, IncrementalEqualsOneShot) {
  std::string data = testing::MakePayload(1'000'003);
  Sha256 h;
  for (size_t off = 0; off < data.size(); off += 4099) {
    h.Update(AsBytes(std::string_view(data).substr(off, 4099)));
  }
  EXPECT_EQ(h.Finish(), Sha256Digest(AsBytes(data)));
}

TEST(DigestTest, ParseAcceptsCanonical) {
  std::string d = "sha256:" + std::string(64, 'a');
  auto p = ParseDigest(d);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, d);
}

TEST(DigestTest, ParseRejectsMalformed) {
  for (std::string bad : {std::string(""), std::string("sha256"), std::string("sha256:"),
                          "sha256:" + std::string(63, 'a'), "sha256:" + std::string(65, 'a'),
                          "sha256:" + std::string(64, 'A'), "sha256:" + std::string(64, 'g'),
                          "sha512:" + std::string(128, 'a'), std::string(64, 'a'),
                          "SHA256:" + std::string(64, 'a')}) {
    auto p = ParseDigest(bad);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace zsnap::unpack
