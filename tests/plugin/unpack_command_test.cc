#include "plugin/unpack_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/plugin/test_util.h"
#include "tests/unpack/tar_builder.h"

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;

TEST(UnpackCommandTest, TimingTableHasEveryStageAndTotal) {
  unpack::LayerTiming t;
  t.layer = "sha256:abc";
  t.codec = "gzip";
  t.digest = "sha256:abc";
  t.diff_id = "sha256:def";
  t.bytes_in = 1000;
  t.bytes_out = 3 << 20;
  t.entries = 7;
  t.threads = 4;
  t.decode = {.busy_s = 0.25, .wait_s = 0.5};
  t.total_s = 1.5;
  const std::string table = FormatTimingTable(t);
  EXPECT_THAT(table, HasSubstr("codec        gzip\n"));
  EXPECT_THAT(table, HasSubstr("diff_id      sha256:def\n"));
  EXPECT_THAT(table, HasSubstr("bytes in     1000 B\n"));
  EXPECT_THAT(table, HasSubstr("bytes out    3.0 MiB (3145728 B)\n"));
  EXPECT_THAT(table, HasSubstr("decode            0.250      0.500\n"));
  for (const char* stage : {"read", "extract", "write", "verify"}) {
    EXPECT_THAT(table, HasSubstr(std::string("\n") + stage)) << stage;
  }
  EXPECT_THAT(table, HasSubstr("total             1.500 s  (2.1 MB/s of tar stream)"));
}

TEST(UnpackCommandTest, UnpacksAPlainTarFile) {
  testing::TempDir dir;
  unpack::testing::TarBuilder tar;
  tar.Dir("etc").File("etc/hello", "world\n");
  const std::string blob = dir.Sub("layer.tar");
  {
    std::ofstream out(blob, std::ios::binary);
    const std::string bytes = tar.Finish();
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  UnpackArgs args;
  args.blob = blob;
  args.dest = dir.Sub("out");
  args.media_type = "application/vnd.oci.image.layer.v1.tar";
  absl::StatusOr<unpack::LayerTiming> timing = RunUnpack(args, {});
  ASSERT_TRUE(timing.ok()) << timing.status();
  EXPECT_EQ(timing->codec, "plain");
  EXPECT_TRUE(timing->diff_id.starts_with("sha256:"));
  std::ifstream in(dir.Sub("out/etc/hello"));
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "world");

  // A wrong diff-id fails and leaves nothing behind.
  args.dest = dir.Sub("out2");
  args.diff_id = "sha256:" + std::string(64, '0');
  timing = RunUnpack(args, {});
  EXPECT_FALSE(timing.ok());
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("out2/etc/hello")));
}

TEST(UnpackCommandTest, BadMediaTypeAndMissingBlob) {
  testing::TempDir dir;
  UnpackArgs args;
  args.blob = dir.Sub("missing");
  args.dest = dir.Sub("out");
  EXPECT_FALSE(RunUnpack(args, {}).ok());
  args.media_type = "application/vnd.oci.image.config.v1+json";
  EXPECT_EQ(RunUnpack(args, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace zsnap::plugin
