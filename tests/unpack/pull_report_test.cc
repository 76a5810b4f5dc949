#include "unpack/pull_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace zsnap::unpack {
namespace {

using ::testing::HasSubstr;

ImageRecord Sample() {
  LayerRecord l;
  l.image = "127.0.0.1:5000/app:v1";
  l.manifest_digest = "sha256:aa";
  l.digest = "sha256:bb";
  l.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
  l.chain_id = "sha256:cc";
  l.index = 2;
  l.queue_wait_s = 0.5;
  l.fetch = {.ttfb_s = 0.01, .duration_s = 1.5, .bytes = 1000, .retries = 1};
  l.unpack.layer = "sha256:bb";
  l.unpack.codec = "zstd";
  l.unpack.bytes_out = 4000;
  l.unpack.entries = 7;
  l.unpack.decode = {.busy_s = 0.25, .wait_s = 0.75};
  l.unpack.total_s = 1.75;
  l.commit_s = 0.125;
  l.total_s = 2.5;
  l.outcome = "ok";
  ImageRecord r;
  r.image = l.image;
  r.manifest_digest = l.manifest_digest;
  r.snapshot_namespace = "k8s.io";
  r.started_unix_ms = 1'795'000'000'000;
  r.wall_s = 3;
  r.bytes_in = 1000;
  r.bytes_out = 4000;
  r.layers_total = 3;
  r.layers_remote = 1;
  r.layers_fallback = 0;
  r.outcome = "ok";
  r.layers = {l};
  l.outcome = "failed";
  l.error = "registry: 404 \"not found\"";
  r.layers.push_back(l);
  return r;
}

TEST(PullReportTest, ImageRecordRoundTripsThroughJson) {
  ImageRecord r = Sample();
  absl::StatusOr<ImageRecord> back = ImageRecordFromJson(nlohmann::json::parse(ToJson(r).dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back), ToJson(r));
  EXPECT_EQ(back->layers[1].error, r.layers[1].error);
  EXPECT_EQ(back->layers[0].unpack.decode.wait_s, 0.75);
  EXPECT_EQ(back->layers[0].fetch.retries, 1);
}

TEST(PullReportTest, MissingFieldsAreNamed) {
  nlohmann::json j = ToJson(Sample());
  j["layers"][0]["fetch"].erase("bytes");
  absl::StatusOr<ImageRecord> back = ImageRecordFromJson(j);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(back.status().message(), HasSubstr("bytes"));

  j = ToJson(Sample());
  j["wall_s"] = "slow";
  back = ImageRecordFromJson(j);
  ASSERT_FALSE(back.ok());
  EXPECT_THAT(back.status().message(), HasSubstr("wall_s"));
  EXPECT_FALSE(ImageRecordFromJson(nlohmann::json::array()).ok());
}

TEST(PullReportTest, LogLinesQuoteAndCarryTheStages) {
  ImageRecord r = Sample();
  std::string line = ToLogLine(r.layers[1]);
  EXPECT_THAT(line, HasSubstr("image=127.0.0.1:5000/app:v1 "));
  EXPECT_THAT(line, HasSubstr("outcome=failed"));
  EXPECT_THAT(line, HasSubstr("fetch_s=1.500"));
  EXPECT_THAT(line, HasSubstr("retries=1"));
  EXPECT_THAT(line, HasSubstr("error=\"registry: 404 \\\"not found\\\"\""));
  std::string image = ToLogLine(r);
  EXPECT_THAT(image, HasSubstr("layers=3 remote=1 fallback=0"));
  EXPECT_THAT(image, HasSubstr("wall_s=3.000"));
}

}  // namespace
}  // namespace zsnap::unpack
