// Whiteout name classification and the overlayfs forms it produces.
#include "unpack/whiteout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "tests/unpack/tar_test_util.h"

namespace zsnap::unpack {
namespace {

TEST(ClassifyWhiteoutTest, Kinds) {
  std::string_view hidden;
  EXPECT_EQ(*ClassifyWhiteout("file", hidden), WhiteoutKind::kNone);
  EXPECT_EQ(*ClassifyWhiteout(".whx", hidden), WhiteoutKind::kNone);
  EXPECT_EQ(*ClassifyWhiteout(".wh..wh..opq", hidden), WhiteoutKind::kOpaque);
  EXPECT_EQ(*ClassifyWhiteout(".wh.passwd", hidden), WhiteoutKind::kWhiteout);
  EXPECT_EQ(hidden, "passwd");
  // Other meta names (aufs ".wh..wh.plnk") hide a file of that name, as in containerd.
  EXPECT_EQ(*ClassifyWhiteout(".wh..wh.plnk", hidden), WhiteoutKind::kWhiteout);
  EXPECT_EQ(hidden, ".wh.plnk");
  EXPECT_EQ(*ClassifyWhiteout(".wh....", hidden), WhiteoutKind::kWhiteout);
  EXPECT_EQ(hidden, "...");
}

TEST(ClassifyWhiteoutTest, NamesThatHideNothingAreInvalid) {
  std::string_view hidden;
  for (std::string_view base : {".wh.", ".wh..", ".wh..."}) {
    EXPECT_EQ(ClassifyWhiteout(base, hidden).status().code(), absl::StatusCode::kInvalidArgument)
        << base;
  }
}

TEST(ApplyWhiteoutTest, MakesZeroZeroCharDeviceAndOpaqueXattr) {
  testing::ScratchDir dir;
  int fd = open(dir.dest().c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(ApplyWhiteout(fd, "gone", getuid(), getgid()).ok());
  struct stat st = testing::Lstat(dir.d("gone"));
  EXPECT_EQ(st.st_mode, S_IFCHR);
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_EQ(ApplyWhiteout(fd, "gone", getuid(), getgid()).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(ApplyOpaque(fd, /*userxattr=*/true).ok());
  EXPECT_EQ(testing::Xattr(dir.dest(), "user.overlay.opaque"), "y");
  if (testing::IsRoot()) {
    ASSERT_TRUE(ApplyOpaque(fd, /*userxattr=*/false).ok());
    EXPECT_EQ(testing::Xattr(dir.dest(), "trusted.overlay.opaque"), "y");
  }
  close(fd);
}

}  // namespace
}  // namespace zsnap::unpack
