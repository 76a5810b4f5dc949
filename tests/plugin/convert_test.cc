#include "plugin/convert.h"

#include <gtest/gtest.h>

namespace zsnap::plugin {
namespace {

absl::Time At(int64_t seconds, int64_t nanos) {
  return absl::FromUnixSeconds(seconds) + absl::Nanoseconds(nanos);
}

TEST(ConvertTest, TimestampIsNanosecondExact) {
  for (absl::Time t : {At(0, 0), At(1714557600, 123456789), At(1714557600, 999999999), At(1, 1),
                       At(-1, 500), At(-62135596800, 0), At(253402300799, 999999999)}) {
    google::protobuf::Timestamp ts;
    TimeToProto(t, &ts);
    EXPECT_GE(ts.nanos(), 0);
    EXPECT_LT(ts.nanos(), 1'000'000'000);
    EXPECT_EQ(TimeFromProto(ts), t) << absl::FormatTime(t);
  }
  google::protobuf::Timestamp ts;
  TimeToProto(At(1714557600, 123456789), &ts);
  EXPECT_EQ(ts.seconds(), 1714557600);
  EXPECT_EQ(ts.nanos(), 123456789);
  // Before 1970 the remainder stays positive: -0.5 s is seconds=-1, nanos=5e8.
  TimeToProto(At(0, -500'000'000), &ts);
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 500'000'000);
}

TEST(ConvertTest, TimestampOutOfRangeIsClamped) {
  google::protobuf::Timestamp ts;
  TimeToProto(absl::InfinitePast(), &ts);
  EXPECT_EQ(ts.seconds(), -62135596800);
  EXPECT_EQ(ts.nanos(), 0);
  TimeToProto(absl::InfiniteFuture(), &ts);
  EXPECT_EQ(ts.seconds(), 253402300799);
  EXPECT_EQ(ts.nanos(), 999999999);
}

TEST(ConvertTest, KindRoundTripsAndIsAlwaysExplicit) {
  EXPECT_EQ(KindToProto(overlay::Kind::kActive), snapshotsv1::ACTIVE);
  EXPECT_EQ(KindToProto(overlay::Kind::kView), snapshotsv1::VIEW);
  EXPECT_EQ(KindToProto(overlay::Kind::kCommitted), snapshotsv1::COMMITTED);
  EXPECT_EQ(KindToProto(overlay::Kind::kUnknown), snapshotsv1::UNKNOWN);
  for (auto kind : {overlay::Kind::kActive, overlay::Kind::kView, overlay::Kind::kCommitted}) {
    EXPECT_EQ(KindFromProto(KindToProto(kind)), kind);
  }
  EXPECT_EQ(KindFromProto(static_cast<snapshotsv1::Kind>(77)), overlay::Kind::kUnknown);
}

TEST(ConvertTest, InfoToProtoSetsEveryField) {
  overlay::Info info;
  info.name = "default/3/sha256:abc";
  info.parent = "default/2/sha256:def";
  info.kind = overlay::Kind::kCommitted;
  info.created = At(1714557600, 1);
  info.updated = At(1714557601, 999999999);
  info.labels = {{"containerd.io/snapshot.ref", "sha256:abc"}, {"a", "b"}};

  snapshotsv1::Info p;
  InfoToProto(info, &p);
  EXPECT_EQ(p.name(), info.name);
  EXPECT_EQ(p.parent(), info.parent);
  EXPECT_EQ(p.kind(), snapshotsv1::COMMITTED);
  ASSERT_TRUE(p.has_created_at());
  ASSERT_TRUE(p.has_updated_at());
  EXPECT_EQ(p.created_at().seconds(), 1714557600);
  EXPECT_EQ(p.created_at().nanos(), 1);
  EXPECT_EQ(p.updated_at().nanos(), 999999999);
  ASSERT_EQ(p.labels().size(), 2u);
  EXPECT_EQ(p.labels().at("a"), "b");
  EXPECT_EQ(InfoFromProto(p), info);
}

TEST(ConvertTest, ZeroInfoStillCarriesBothTimestamps) {
  snapshotsv1::Info p;
  InfoToProto(overlay::Info{}, &p);
  EXPECT_TRUE(p.has_created_at());
  EXPECT_TRUE(p.has_updated_at());
  // The wire form must carry them even when they are zero-valued messages.
  snapshotsv1::Info reparsed;
  ASSERT_TRUE(reparsed.ParseFromString(p.SerializeAsString()));
  EXPECT_TRUE(reparsed.has_created_at());
  EXPECT_TRUE(reparsed.has_updated_at());
}

TEST(ConvertTest, InfoFromProtoWithoutTimestamps) {
  snapshotsv1::Info p;
  p.set_name("k");
  p.set_kind(snapshotsv1::ACTIVE);
  (*p.mutable_labels())["x"] = "";
  const overlay::Info info = InfoFromProto(p);
  EXPECT_EQ(info.name, "k");
  EXPECT_EQ(info.kind, overlay::Kind::kActive);
  EXPECT_EQ(info.created, absl::UnixEpoch());
  EXPECT_EQ(info.labels, (overlay::Labels{{"x", ""}}));
}

TEST(ConvertTest, MountsLeaveTargetEmptyAndKeepOptionOrder) {
  const std::vector<overlay::Mount> mounts = {
      {.type = "overlay",
       .source = "overlay",
       .options = {"index=off", "workdir=/r/snapshots/2/work", "upperdir=/r/snapshots/2/fs",
                   "lowerdir=/r/snapshots/1/fs"}},
      {.type = "bind", .source = "/r/snapshots/1/fs", .options = {"ro", "rbind"}},
  };
  google::protobuf::RepeatedPtrField<::containerd::types::Mount> p;
  MountsToProto(mounts, &p);
  ASSERT_EQ(p.size(), 2);
  EXPECT_EQ(p[0].type(), "overlay");
  EXPECT_EQ(p[0].source(), "overlay");
  EXPECT_EQ(p[0].target(), "");
  ASSERT_EQ(p[0].options_size(), 4);
  EXPECT_EQ(p[0].options(3), "lowerdir=/r/snapshots/1/fs");
  EXPECT_EQ(p[1].target(), "");
  EXPECT_EQ(MountsFromProto(p), mounts);
}

TEST(ConvertTest, Usage) {
  snapshotsv1::UsageResponse p;
  UsageToProto({.size = int64_t{5} << 40, .inodes = 12}, &p);
  EXPECT_EQ(p.size(), int64_t{5} << 40);
  EXPECT_EQ(p.inodes(), 12);
}

}  // namespace
}  // namespace zsnap::plugin
