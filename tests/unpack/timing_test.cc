#include "unpack/timing.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace zsnap::unpack {
namespace {

using ::testing::HasSubstr;

LayerTiming Sample() {
  LayerTiming t;
  t.layer = "sha256:abc";
  t.codec = "gzip";
  t.digest = "sha256:abc";
  t.diff_id = "sha256:def";
  t.bytes_in = 1000;
  t.bytes_out = 4'000'000;
  t.entries = 12;
  t.file_bytes = 3'500'000;
  t.threads = 4;
  t.decode = {0.5, 0.25};
  t.total_s = 2.0;
  return t;
}

TEST(TimingTest, JsonHasEveryField) {
  nlohmann::json j = ToJson(Sample());
  EXPECT_EQ(j["layer"], "sha256:abc");
  EXPECT_EQ(j["codec"], "gzip");
  EXPECT_EQ(j["bytes_out"], 4'000'000u);
  EXPECT_EQ(j["decode"]["busy_s"], 0.5);
  EXPECT_EQ(j["decode"]["wait_s"], 0.25);
  EXPECT_DOUBLE_EQ(j["throughput_mbps"].get<double>(), 2.0);
  for (const char* k : {"digest", "diff_id", "bytes_in", "entries", "file_bytes", "threads", "read",
                        "extract", "write", "verify", "total_s"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
}

TEST(TimingTest, LogLineIsKeyValue) {
  std::string line = ToLogLine(Sample());
  EXPECT_THAT(line, ::testing::StartsWith("layer=sha256:abc codec=gzip "));
  EXPECT_THAT(line, HasSubstr(" bytes_out=4000000 "));
  EXPECT_THAT(line, HasSubstr(" total_s=2.000 "));
  EXPECT_THAT(line, HasSubstr(" decode_busy_s=0.500 decode_wait_s=0.250"));
}

TEST(TimingTest, LogLineQuotesAwkwardValues) {
  LayerTiming t = Sample();
  t.layer = "my layer \"x\"";
  t.diff_id = "";
  std::string line = ToLogLine(t);
  EXPECT_THAT(line, ::testing::StartsWith("layer=\"my layer \\\"x\\\"\" "));
  EXPECT_THAT(line, HasSubstr(" diff_id=\"\" "));
}

TEST(TimingTest, ZeroTotalHasZeroThroughput) { EXPECT_EQ(LayerTiming{}.ThroughputMBps(), 0); }

}  // namespace
}  // namespace zsnap::unpack
