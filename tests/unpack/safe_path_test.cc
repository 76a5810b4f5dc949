// Lexical cleaning of tar names (Go's filepath.Clean, then what resolves to the root
// dropped) and parent resolution/creation inside the root.
#include "unpack/safe_path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "tests/overlay/run_confined.h"
#include "tests/unpack/tar_test_util.h"

namespace zsnap::unpack {
namespace {

std::string Clean(std::string_view name) {
  std::string out = "garbage";
  CleanEntryPath(name, out);
  return out;
}

TEST(CleanEntryPathTest, MatchesGoCleanRootRelative) {
  EXPECT_EQ(Clean(""), "");
  EXPECT_EQ(Clean("."), "");
  EXPECT_EQ(Clean("./"), "");
  EXPECT_EQ(Clean("/"), "");
  EXPECT_EQ(Clean(".."), "");
  EXPECT_EQ(Clean("a/.."), "");
  EXPECT_EQ(Clean("./usr/bin/"), "usr/bin");
  EXPECT_EQ(Clean("usr//bin/./x"), "usr/bin/x");
  EXPECT_EQ(Clean("../../etc/x"), "etc/x");
  EXPECT_EQ(Clean("/abs/path"), "abs/path");
  EXPECT_EQ(Clean("a/b/../../../c"), "c");
  EXPECT_EQ(Clean("a/b/../c"), "a/c");
  EXPECT_EQ(Clean("..."), "...");
}

TEST(SplitParentTest, Splits) {
  EXPECT_EQ(SplitParent("a"), std::make_pair(std::string_view(), std::string_view("a")));
  EXPECT_EQ(SplitParent("a/b/c"), std::make_pair(std::string_view("a/b"), std::string_view("c")));
}

TEST(SafeRootTest, DirCreatesMissingAndCaches) {
  testing::ScratchDir dir;
  absl::StatusOr<SafeRoot> root = SafeRoot::Open(dir.dest());
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->Dir("x/y", false).status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<int> fd = root->Dir("x/y", true);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(S_ISDIR(testing::Lstat(dir.d("x/y")).st_mode));
  EXPECT_EQ(*root->Dir("x/y", false), *fd);  // cached
  ASSERT_EQ(symlinkat("/x", root->fd(), "up"), 0);
  absl::StatusOr<int> via = root->Dir("up/y", false);
  ASSERT_TRUE(via.ok()) << via.status();
  struct stat a, b;
  fstat(*via, &a);
  stat(dir.d("x/y").c_str(), &b);
  EXPECT_EQ(a.st_ino, b.st_ino);
}

TEST(RemoveAllAtTest, RemovesTreesAndNotSymlinkTargets) {
  testing::ScratchDir dir;
  std::filesystem::create_directories(dir.d("t/a/b"));
  std::filesystem::create_directory_symlink(dir.outside(), dir.d("t/a/link"));
  int fd = open(dir.dest().c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(RemoveAllAt(fd, "t").ok());
  ASSERT_TRUE(RemoveAllAt(fd, "missing").ok());
  close(fd);
  EXPECT_FALSE(std::filesystem::exists(dir.d("t")));
  EXPECT_EQ(testing::ReadFile(dir.outside() + "/secret"), "s3cret");
}

// Issue 11: a layer entry replacing a directory that a container (or an earlier layer entry)
// nested 40,000 levels deep made the recursive RemoveAllAt overflow its stack (or run out of
// descriptors). The removal now runs on a 256 KiB stack with 16 spare descriptors.
TEST(RemoveAllAtTest, RemovesDeepTreeWithBoundedStackAndDescriptors) {
  testing::ScratchDir dir;
  int fd = open(dir.dest().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(mkdirat(fd, "deep", 0755), 0);
  int cur = openat(fd, "deep", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (int i = 0; i < 40000 && cur >= 0; ++i) {
    ASSERT_EQ(mkdirat(cur, "d", 0755), 0);
    if (i % 1000 == 0) close(openat(cur, "f", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    const int next = openat(cur, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(cur);
    cur = next;
  }
  ASSERT_GE(cur, 0);
  close(cur);
  const overlay::testing::ConfinedResult removed = overlay::testing::RunConfined(
      [&] { return overlay::testing::FromStatus(RemoveAllAt(fd, "deep")); });
  EXPECT_TRUE(removed.ok) << removed.message;
  struct stat st;
  EXPECT_NE(fstatat(fd, "deep", &st, AT_SYMLINK_NOFOLLOW), 0);
  close(fd);
}

}  // namespace
}  // namespace zsnap::unpack
