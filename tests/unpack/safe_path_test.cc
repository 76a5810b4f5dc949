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

std::string Repeat(std::string_view part, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.append(part);
  return out;
}

// "d/d/.../d": n components.
std::string Chain(int n) {
  std::string out = Repeat("d/", n);
  out.pop_back();
  return out;
}

int OpenFds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

ino_t Inode(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

// Issue 11: a directory chain costs one lookup per new component, none for the directory of
// the previous entry, none for a directory already on the chain.
TEST(SafeRootTest, ConsecutiveAndSiblingDirsCostOnlyNewComponents) {
  testing::ScratchDir dir;
  absl::StatusOr<SafeRoot> root = SafeRoot::Open(dir.dest());
  ASSERT_TRUE(root.ok()) << root.status();
  ASSERT_TRUE(root->Dir("a/b/c", true).ok());
  uint64_t n = root->lookups();
  EXPECT_LE(n, 3u * 5);  // per new directory: open (ENOENT), mkdir, open, chmod, stat
  ASSERT_TRUE(root->Dir("a/b/c", true).ok());
  EXPECT_EQ(root->lookups(), n) << "same directory again";
  ASSERT_TRUE(root->Dir("a/b/d", true).ok());
  EXPECT_LE(root->lookups(), n + 5) << "a sibling: one new component";
  n = root->lookups();
  ASSERT_TRUE(root->Dir("a/b", false).ok());
  EXPECT_EQ(root->lookups(), n) << "the parent is on the chain";
  ASSERT_TRUE(root->Dir("a/b/d/e/f", true).ok());
  EXPECT_LE(root->lookups(), n + 2 + 2 * 5);
  EXPECT_TRUE(S_ISDIR(testing::Lstat(dir.d("a/b/d/e/f")).st_mode));
  // The root itself, and back: the chain is rebuilt from the root, one lookup pair a level.
  n = root->lookups();
  ASSERT_TRUE(root->Dir("", false).ok());
  ASSERT_TRUE(root->Dir("a/b/c", false).ok());
  EXPECT_LE(root->lookups(), n + 3 * 2);
}

TEST(SafeRootTest, DeepChainHoldsBoundedDescriptors) {
  testing::ScratchDir dir;
  absl::StatusOr<SafeRoot> root = SafeRoot::Open(dir.dest());
  ASSERT_TRUE(root.ok()) << root.status();
  const int before = OpenFds();
  const int depth = 1500;  // "d/" * 1500: 2999 bytes, under PATH_MAX
  absl::StatusOr<int> deep = root->Dir(Chain(depth), true);
  ASSERT_TRUE(deep.ok()) << deep.status();
  EXPECT_LE(OpenFds(), before + static_cast<int>(SafeRoot::kMaxChainFds));
  EXPECT_LE(root->lookups(), 5u * depth);
  const ino_t bottom = Inode(*deep);

  uint64_t n = root->lookups();
  ASSERT_TRUE(root->Dir(Chain(depth - 1), false).ok());
  EXPECT_LE(root->lookups(), n + 2) << "one level up: the parent is open";
  n = root->lookups();
  ASSERT_TRUE(root->Dir(Chain(3), false).ok());
  EXPECT_LE(root->lookups(), n + 2 * 3) << "near the root: reopened from the root";
  n = root->lookups();
  absl::StatusOr<int> again = root->Dir(Chain(depth), false);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Inode(*again), bottom);
  EXPECT_LE(root->lookups(), n + 2 * depth);
  EXPECT_LE(OpenFds(), before + static_cast<int>(SafeRoot::kMaxChainFds));

  // Past PATH_MAX: refused, as containerd's Lstat of such a path fails.
  absl::StatusOr<int> too_long = root->Dir(Chain(2100), true);
  EXPECT_FALSE(too_long.ok());
  EXPECT_NE(std::string(too_long.status().message()).find("too long"), std::string::npos)
      << too_long.status();
}

TEST(SafeRootTest, SymlinksResolveLikeRootPathInsideTheRoot) {
  testing::ScratchDir dir;
  const std::string before = testing::Snapshot(dir.outside());
  absl::StatusOr<SafeRoot> root = SafeRoot::Open(dir.dest());
  ASSERT_TRUE(root.ok()) << root.status();
  ASSERT_TRUE(root->Dir("real/sub", true).ok());
  const int rfd = root->fd();
  ASSERT_EQ(symlinkat("../../../../real", rfd, "up"), 0);
  ASSERT_EQ(symlinkat("/real/sub", rfd, "abs"), 0);
  ASSERT_EQ(symlinkat("/made/here", rfd, "dangling"), 0);
  ASSERT_EQ(symlinkat("nonexistent/../real", rfd, "lexical"), 0);
  ASSERT_EQ(symlinkat("loop2", rfd, "loop1"), 0);
  ASSERT_EQ(symlinkat("loop1", rfd, "loop2"), 0);
  ASSERT_EQ(symlinkat(dir.outside().c_str(), rfd, "outside"), 0);
  close(openat(rfd, "file", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));

  absl::StatusOr<int> up = root->Dir("up/sub", false);
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(Inode(*up), testing::Lstat(dir.d("real/sub")).st_ino);
  ASSERT_TRUE(root->Dir("abs/new", true).ok());
  EXPECT_TRUE(S_ISDIR(testing::Lstat(dir.d("real/sub/new")).st_mode));
  ASSERT_TRUE(root->Dir("dangling/x", true).ok());
  EXPECT_TRUE(S_ISDIR(testing::Lstat(dir.d("made/here/x")).st_mode));
  // Go's filepath.Join cleans the target lexically: "nonexistent/.." is never looked at.
  absl::StatusOr<int> lexical = root->Dir("lexical/sub", false);
  ASSERT_TRUE(lexical.ok()) << lexical.status();
  EXPECT_EQ(Inode(*lexical), testing::Lstat(dir.d("real/sub")).st_ino);
  // An absolute link to the real outside directory lands on dest/<that path>.
  ASSERT_TRUE(root->Dir("outside/sub", true).ok());
  EXPECT_TRUE(S_ISDIR(testing::Lstat(dir.d(dir.outside().substr(1) + "/sub")).st_mode));

  absl::StatusOr<int> loop = root->Dir("loop1/x", true);
  EXPECT_FALSE(loop.ok());
  EXPECT_NE(std::string(loop.status().message()).find("symbolic links"), std::string::npos)
      << loop.status();
  EXPECT_EQ(root->Dir("file/x", true).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(testing::Snapshot(dir.outside()), before);
}

// Links whose targets walk other links twice (l<i> -> l<i-1>/back/l<i-1>, where `back`, at
// the bottom of a 1000-deep chain, leads to the root): each level doubles the components to
// walk; lexical cleaning cannot shorten them. Resolution stops at kMaxResolveSteps, and the
// work it did stays bounded by it (walking the chain again costs no syscall).
TEST(SafeRootTest, SymlinkExpansionIsBounded) {
  testing::ScratchDir dir;
  absl::StatusOr<SafeRoot> root = SafeRoot::Open(dir.dest());
  ASSERT_TRUE(root.ok()) << root.status();
  absl::StatusOr<int> deep = root->Dir(Chain(1000), true);
  ASSERT_TRUE(deep.ok());
  const ino_t bottom = Inode(*deep);
  ASSERT_EQ(symlinkat("/", *deep, "back"), 0);
  ASSERT_EQ(symlinkat(Chain(1000).c_str(), root->fd(), "l0"), 0);
  for (int i = 1; i <= 8; ++i) {
    const std::string prev = "l" + std::to_string(i - 1);
    const std::string target = prev + "/back/" + prev;
    ASSERT_EQ(symlinkat(target.c_str(), root->fd(), ("l" + std::to_string(i)).c_str()), 0);
  }
  uint64_t n = root->lookups();
  absl::StatusOr<int> mild = root->Dir("l2", false);  // 4 walks of the chain
  ASSERT_TRUE(mild.ok()) << mild.status();
  EXPECT_EQ(Inode(*mild), bottom);
  EXPECT_LE(root->lookups() - n, 3u * 7 + 2u * SafeRoot::kMaxChainFds + 8);

  n = root->lookups();
  absl::StatusOr<int> hostile = root->Dir("l8/x", true);
  EXPECT_EQ(hostile.status().code(), absl::StatusCode::kResourceExhausted) << hostile.status();
  EXPECT_LE(root->lookups() - n, 3u * SafeRoot::kMaxLinks + 2u * SafeRoot::kMaxResolveSteps);
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
