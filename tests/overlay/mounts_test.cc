#include "overlay/mounts.h"

#include <linux/magic.h>
#include <sys/statfs.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/overlay/test_util.h"

namespace zsnap::overlay {
namespace {

using ::testing::ElementsAre;

MountConfig Config(bool index_off = false, bool userxattr = false) {
  return MountConfig{
      .snapshots_dir = "/r/snapshots", .index_off = index_off, .userxattr = userxattr};
}

TEST(BuildMounts, NoParentIsABindOfTheOwnLayer) {
  EXPECT_THAT(BuildMounts(Config(true, true), Kind::kActive, 7, {}),
              ElementsAre(Mount{"bind", "/r/snapshots/7/fs", {"rw", "rbind"}}));
  EXPECT_THAT(BuildMounts(Config(true, true), Kind::kView, 7, {}),
              ElementsAre(Mount{"bind", "/r/snapshots/7/fs", {"ro", "rbind"}}));
}

TEST(BuildMounts, ViewOfOneParentBindsTheParent) {
  EXPECT_THAT(BuildMounts(Config(true, true), Kind::kView, 9, {3}),
              ElementsAre(Mount{"bind", "/r/snapshots/3/fs", {"ro", "rbind"}}));
}

TEST(BuildMounts, ActiveOnOneParentIsAnOverlay) {
  EXPECT_THAT(BuildMounts(Config(), Kind::kActive, 9, {3}),
              ElementsAre(Mount{"overlay",
                                "overlay",
                                {"workdir=/r/snapshots/9/work", "upperdir=/r/snapshots/9/fs",
                                 "lowerdir=/r/snapshots/3/fs"}}));
}

TEST(BuildMounts, OptionalOptionsComeFirstInContainerdOrder) {
  EXPECT_THAT(BuildMounts(Config(true, true), Kind::kActive, 9, {5, 3}),
              ElementsAre(Mount{
                  "overlay",
                  "overlay",
                  {"index=off", "userxattr", "workdir=/r/snapshots/9/work",
                   "upperdir=/r/snapshots/9/fs", "lowerdir=/r/snapshots/5/fs:/r/snapshots/3/fs"}}));
  EXPECT_THAT(
      BuildMounts(Config(true, false), Kind::kView, 9, {5, 3}),
      ElementsAre(Mount{
          "overlay", "overlay", {"index=off", "lowerdir=/r/snapshots/5/fs:/r/snapshots/3/fs"}}));
  EXPECT_THAT(
      BuildMounts(Config(false, true), Kind::kView, 9, {5, 3}),
      ElementsAre(Mount{
          "overlay", "overlay", {"userxattr", "lowerdir=/r/snapshots/5/fs:/r/snapshots/3/fs"}}));
}

TEST(BuildMounts, ManyParentsNearestFirst) {
  std::vector<int64_t> parents;
  std::vector<std::string> lower;
  for (int64_t id = 128; id >= 1; --id) {
    parents.push_back(id);
    lower.push_back(absl::StrCat("/r/snapshots/", id, "/fs"));
  }
  const std::vector<Mount> view = BuildMounts(Config(), Kind::kView, 200, parents);
  ASSERT_EQ(view.size(), 1u);
  EXPECT_THAT(view[0].options, ElementsAre(absl::StrCat("lowerdir=", absl::StrJoin(lower, ":"))));
  const std::vector<Mount> active = BuildMounts(Config(), Kind::kActive, 200, parents);
  ASSERT_EQ(active[0].options.size(), 3u);
  EXPECT_EQ(active[0].options[2], view[0].options[0]);
}

TEST(OverlayHasIndexParam, FollowsThePresenceOfTheFile) {
  testing::TempDir dir;
  EXPECT_FALSE(OverlayHasIndexParam(dir.Sub("index")));
  testing::WriteFile(dir.Sub("index"), "N\n");
  EXPECT_TRUE(OverlayHasIndexParam(dir.Sub("index")));
}

TEST(Userxattr, IdentityUidMap) {
  EXPECT_TRUE(IsIdentityUidMap("         0          0 4294967295\n"));
  EXPECT_FALSE(IsIdentityUidMap("         0       1000          1\n"));
  EXPECT_FALSE(IsIdentityUidMap("0 0 4294967295\n1 1 1\n"));
  EXPECT_FALSE(IsIdentityUidMap(""));
}

TEST(Userxattr, KernelVersion) {
  EXPECT_TRUE(KernelAtLeast5_11("5.11.0"));
  EXPECT_TRUE(KernelAtLeast5_11("5.11-rc1"));
  EXPECT_TRUE(KernelAtLeast5_11("6.1.0-18-amd64"));
  EXPECT_FALSE(KernelAtLeast5_11("5.10.209"));
  EXPECT_FALSE(KernelAtLeast5_11("4.19"));
  EXPECT_FALSE(KernelAtLeast5_11("garbage"));
}

TEST(Userxattr, NeedsUserxattrDecidesLikeContainerd) {
  testing::TempDir dir;
  testing::WriteFile(dir.Sub("identity"), "0 0 4294967295\n");
  testing::WriteFile(dir.Sub("userns"), "0 1000 1\n");
  EXPECT_FALSE(NeedsUserxattr(dir.path(), {dir.Sub("identity"), "6.1.0"}));
  EXPECT_FALSE(NeedsUserxattr(dir.path(), {dir.Sub("missing"), "6.1.0"}));
}

TEST(Userxattr, UserNamespaceNeedsANewEnoughKernel) {
  testing::TempDir dir;
  testing::WriteFile(dir.Sub("userns"), "0 1000 1\n");
  struct statfs fs;
  ASSERT_EQ(statfs(dir.path().c_str(), &fs), 0);
  if (fs.f_type == TMPFS_MAGIC)
    GTEST_SKIP() << "temp dir is on tmpfs, where userxattr is never used";
  EXPECT_TRUE(NeedsUserxattr(dir.path(), {dir.Sub("userns"), "5.11.0"}));
  EXPECT_FALSE(NeedsUserxattr(dir.path(), {dir.Sub("userns"), "5.10.0"}));
}

}  // namespace
}  // namespace zsnap::overlay
