#include "overlay/dir_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/overlay/test_util.h"

namespace zsnap::overlay {
namespace {

using testing::Exists;
using testing::TempDir;
using testing::WriteFile;

TEST(MakeDirWithMode, IgnoresTheUmask) {
  TempDir dir;
  const mode_t old = umask(0077);
  const absl::Status s = MakeDirWithMode(dir.Sub("d"), 0755);
  umask(old);
  ASSERT_TRUE(s.ok()) << s;
  struct stat st;
  ASSERT_EQ(stat(dir.Sub("d").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(MakeDirWithMode(dir.Sub("d"), 0755).code(), absl::StatusCode::kAlreadyExists);
}

TEST(MakeTempDir, UniqueNamesWithPrefix) {
  TempDir dir;
  absl::StatusOr<std::string> a = MakeTempDir(dir.path(), "new-");
  absl::StatusOr<std::string> b = MakeTempDir(dir.path(), "new-");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->rfind(dir.path() + "/new-", 0), 0u);
  EXPECT_TRUE(Exists(*a));
}

TEST(RemoveTree, RemovesNestedTreesWithoutFollowingSymlinks) {
  TempDir dir;
  ASSERT_EQ(mkdir(dir.Sub("keep").c_str(), 0755), 0);
  WriteFile(dir.Sub("keep/file"), "precious");
  ASSERT_EQ(mkdir(dir.Sub("t").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(dir.Sub("t/a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(dir.Sub("t/a/b").c_str(), 0000), 0);  // unreadable to others; we are root
  WriteFile(dir.Sub("t/a/f"), "x");
  ASSERT_EQ(symlink(dir.Sub("keep").c_str(), dir.Sub("t/a/link").c_str()), 0);
  ASSERT_TRUE(RemoveTree(dir.Sub("t")).ok());
  EXPECT_FALSE(Exists(dir.Sub("t")));
  EXPECT_TRUE(Exists(dir.Sub("keep/file")));
  EXPECT_TRUE(RemoveTree(dir.Sub("t")).ok()) << "a missing tree is not an error";
  WriteFile(dir.Sub("plain"), "x");
  EXPECT_TRUE(RemoveTree(dir.Sub("plain")).ok());
  EXPECT_FALSE(Exists(dir.Sub("plain")));
}

TEST(ListDir, NamesWithoutDots) {
  TempDir dir;
  WriteFile(dir.Sub("a"), "");
  ASSERT_EQ(mkdir(dir.Sub("b").c_str(), 0755), 0);
  absl::StatusOr<std::vector<std::string>> names = ListDir(dir.path());
  ASSERT_TRUE(names.ok());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ListDir(dir.Sub("nope")).status().code(), absl::StatusCode::kNotFound);
}

TEST(DiskUsage, CountsBlocksAndInodesOncePerInode) {
  TempDir dir;
  const std::string root = dir.Sub("fs");
  ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
  absl::StatusOr<Usage> empty = DiskUsage(root);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->inodes, 1);  // the directory itself

  WriteFile(root + "/f", std::string(64 * 1024, 'x'));
  ASSERT_EQ(link((root + "/f").c_str(), (root + "/hard").c_str()), 0);
  ASSERT_EQ(mkdir((root + "/d").c_str(), 0755), 0);
  ASSERT_EQ(symlink("f", (root + "/d/sym").c_str()), 0);
  absl::StatusOr<Usage> u = DiskUsage(root);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->inodes, 4);  // root, f (= hard), d, sym

  int64_t expected = 0;
  for (const std::string& p :
       std::vector<std::string>{root, root + "/f", root + "/d", root + "/d/sym"}) {
    struct stat st;
    ASSERT_EQ(lstat(p.c_str(), &st), 0);
    expected += static_cast<int64_t>(st.st_blocks) * 512;
  }
  EXPECT_EQ(u->size, expected);
  EXPECT_GE(u->size, 64 * 1024);
  EXPECT_EQ(DiskUsage(dir.Sub("nope")).status().code(), absl::StatusCode::kNotFound);
}

TEST(FsyncDir, WorksOnDirectoriesAndReportsMissing) {
  TempDir dir;
  EXPECT_TRUE(FsyncDir(dir.path()).ok());
  const absl::Status s = FsyncDir(dir.Sub("nope"));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find(dir.Sub("nope")), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace zsnap::overlay
