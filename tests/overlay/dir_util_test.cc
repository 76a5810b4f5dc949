#include "overlay/dir_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "gtest/gtest.h"
#include "tests/overlay/run_confined.h"
#include "tests/overlay/test_util.h"

namespace zsnap::overlay {
namespace {

using testing::ConfinedResult;
using testing::Exists;
using testing::FromStatus;
using testing::RunConfined;
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

// A hostile rw layer: `depth` nested directories (deeper than PATH_MAX, built with one held
// descriptor, so iteratively) with a 64 KiB file at the bottom, `files` empty files in one
// directory, and hard links to both. Returns the usage containerd would report.
Usage MakeHostileTree(const std::string& root, int depth, int files) {
  Usage expected;
  auto count = [&](int fd) {
    struct stat st;
    EXPECT_EQ(fstat(fd, &st), 0);
    expected.size += static_cast<int64_t>(st.st_blocks) * 512;
    ++expected.inodes;
  };
  EXPECT_EQ(mkdir(root.c_str(), 0755), 0);
  // A directory is counted once its entries are made: its own blocks grow with them.
  const int top = open(root.c_str(), O_RDONLY | O_DIRECTORY);
  EXPECT_EQ(mkdirat(top, "many", 0755), 0);
  const int many = openat(top, "many", O_RDONLY | O_DIRECTORY);
  for (int i = 0; i < files; ++i) {
    const int f = openat(many, ("f" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644);
    count(f);
    close(f);
  }
  EXPECT_EQ(linkat(many, "f0", many, "link-f0", 0), 0);
  count(many);
  EXPECT_EQ(mkdirat(top, "deep", 0755), 0);
  int fd = openat(top, "deep", O_RDONLY | O_DIRECTORY);
  for (int i = 0; i < depth; ++i) {
    EXPECT_EQ(mkdirat(fd, "d", 0755), 0);
    const int next = openat(fd, "d", O_RDONLY | O_DIRECTORY);
    count(fd);
    close(fd);
    fd = next;
  }
  const int bottom = openat(fd, "bottom", O_CREAT | O_WRONLY, 0644);
  const std::string data(64 * 1024, 'x');
  EXPECT_EQ(write(bottom, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(fsync(bottom), 0);  // allocate the blocks now, so st_blocks is final
  count(bottom);
  close(bottom);
  EXPECT_EQ(linkat(fd, "bottom", top, "link-bottom", 0), 0);  // counted once, at any depth
  count(fd);
  count(top);
  close(fd);
  close(many);
  close(top);
  return expected;
}

// Issue 11: a container's 40,000-deep directory crashed zsnap's recursive DiskUsage (stack)
// and made RemoveTree fail with EMFILE, leaking the tree.
TEST(TreeWalk, DeepWideTreeNeedsNeitherStackNorDescriptors) {
  TempDir dir;
  const std::string root = dir.Sub("fs");
  const Usage expected = MakeHostileTree(root, 40000, 100000);
  ASSERT_EQ(expected.inodes, 1 + 1 + 100000 + 1 + 40000 + 1);

  const ConfinedResult usage = RunConfined([&] {
    absl::StatusOr<Usage> u = DiskUsage(root);
    const Usage got = u.value_or(Usage{});
    return FromStatus(u.status(), got.size, got.inodes);
  });
  ASSERT_TRUE(usage.ok) << usage.message;
  const Usage got{.size = usage.values[0], .inodes = usage.values[1]};
  EXPECT_EQ(got, expected) << "size " << got.size << " vs " << expected.size << ", inodes "
                           << got.inodes << " vs " << expected.inodes;

  const ConfinedResult removed = RunConfined([&] { return FromStatus(RemoveTree(root)); });
  ASSERT_TRUE(removed.ok) << removed.message;
  EXPECT_FALSE(Exists(root));
}

// A chain a few times deeper than the descriptor budget with entries on every level: the
// walk closes and reopens directories through ".." and resumes each where it stopped.
TEST(TreeWalk, ResumesReopenedDirectories) {
  TempDir dir;
  const std::string root = dir.Sub("fs");
  ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
  std::string path = root;
  for (int level = 0; level < 40; ++level) {
    for (int i = 0; i < 50; ++i) WriteFile(path + "/f" + std::to_string(i), "x");
    path += "/d";
    ASSERT_EQ(mkdir(path.c_str(), 0755), 0);
    ASSERT_EQ(mkdir((path + "-sibling").c_str(), 0755), 0);
  }
  absl::StatusOr<Usage> u = DiskUsage(root);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->inodes, 1 + 40 * 52);
  ASSERT_TRUE(RemoveTree(root).ok());
  EXPECT_FALSE(Exists(root));
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
