// Lexical cleaning of tar names (Go's filepath.Clean, then what resolves to the root
// dropped) and parent resolution/creation inside the root.
#include "unpack/safe_path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "gtest/gtest.h"
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

}  // namespace
}  // namespace zsnap::unpack
