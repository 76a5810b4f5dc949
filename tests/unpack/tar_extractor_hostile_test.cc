// ExtractTar on hostile and broken input: path escapes (`..`, absolute names, symlinked
// parents, symlink `..` chains, hard links out of the root or through symlinks) are confined
// inside the destination as containerd's fs.RootPath confines them, or fail clearly; in
// every case a sentinel directory next to the destination is unchanged. Truncated and
// malformed streams, entry limits, cancellation and source errors map to their codes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unpack/tar_builder.h"
#include "tests/unpack/tar_test_util.h"
#include "unpack/tar_extractor.h"

namespace zsnap::unpack::testing {
namespace {

class HostileTarTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { before_ = Snapshot(dir_.outside()); }
  void TearDown() override {
    EXPECT_EQ(Snapshot(dir_.outside()), before_) << "something outside dest changed";
    std::vector<std::string> top;
    for (const auto& e : std::filesystem::directory_iterator(dir_.base())) {
      top.push_back(e.path().filename().string());
    }
    std::sort(top.begin(), top.end());
    EXPECT_EQ(top, (std::vector<std::string>{"dest", "outside"}));
  }
  absl::StatusOr<ExtractStats> Run(const std::string& tar, ExtractOptions options = {},
                                   std::vector<size_t> chunks = {4096}) {
    options.writer_threads = GetParam();
    return Extract(tar, dir_.dest(), options, std::move(chunks));
  }
  std::string d(const std::string& rel) const { return dir_.d(rel); }

  ScratchDir dir_;
  std::string before_;
};

TEST_P(HostileTarTest, DotDotAndAbsoluteNamesStayInside) {
  // Relative to dest, "../outside/..." would be the sentinel; absolute names point at it too.
  const std::string abs = dir_.outside() + "/abs-escape";
  TarBuilder b;
  b.File("../outside/dotdot", "x")
      .File("../../../../../../etc/zsnap-escape-test", "x")
      .File("a/../../outside/secret", "overwritten?")
      .File(abs, "x")
      .Dir(dir_.outside() + "/newdir");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(d("outside/dotdot")), "x");
  EXPECT_EQ(ReadFile(d("etc/zsnap-escape-test")), "x");
  EXPECT_EQ(ReadFile(d("outside/secret")), "overwritten?");
  EXPECT_EQ(ReadFile(d(abs.substr(1))), "x");
  EXPECT_TRUE(S_ISDIR(Lstat(d(dir_.outside().substr(1) + "/newdir")).st_mode));
  EXPECT_EQ(access("/etc/zsnap-escape-test", F_OK), -1);
}

TEST_P(HostileTarTest, SymlinkedParentIsResolvedInsideRoot) {
  TarBuilder b;
  b.Symlink("abs", dir_.outside())  // absolute: means <dest>/<outside path>
      .File("abs/x", "via abs")
      .Symlink("rel", "../../../../outside")  // `..` chain: clamps at the root
      .File("rel/y", "via rel")
      .Symlink("chain1", "chain2")
      .Symlink("chain2", "../abs")
      .File("chain1/z", "via chain")
      .Symlink("dangling", "/nonexistent/deeper")
      .File("dangling/w", "created inside");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  const std::string in = dir_.outside().substr(1);
  EXPECT_EQ(ReadFile(d(in + "/x")), "via abs");
  EXPECT_EQ(ReadFile(d("outside/y")), "via rel");
  EXPECT_EQ(ReadFile(d(in + "/z")), "via chain");
  EXPECT_EQ(ReadFile(d("nonexistent/deeper/w")), "created inside");
  EXPECT_TRUE(S_ISLNK(Lstat(d("abs")).st_mode));
}

TEST_P(HostileTarTest, SymlinkToSentinelFileAsParentFails) {
  TarBuilder b;
  b.File("file", "f").Symlink("s", "/file").File("s/child", "x");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  EXPECT_FALSE(stats.ok());
  EXPECT_NE(stats.status().message().find("entry \"s/child\""), std::string::npos)
      << stats.status();
}

TEST_P(HostileTarTest, HardlinksOutsideTheRootAreConfined) {
  const std::string abs_secret = dir_.outside() + "/secret";
  // Targets that exist only outside: containerd resolves them inside the root, where they
  // do not exist, so the link fails; nothing outside is linked.
  for (const std::string& target :
       {std::string("../outside/secret"), abs_secret, std::string("../../../../") + abs_secret}) {
    TarBuilder b;
    b.Hardlink("stolen", target);
    absl::StatusOr<ExtractStats> stats = Run(b.Finish());
    EXPECT_EQ(stats.status().code(), absl::StatusCode::kNotFound) << target;
    EXPECT_NE(stats.status().message().find("entry \"stolen\""), std::string::npos)
        << stats.status();
    EXPECT_EQ(Lstat(dir_.outside() + "/secret").st_nlink, 1u);
  }
  // With a same-named file inside the root, the link goes to that one.
  TarBuilder b;
  b.File("outside/secret", "inside").Hardlink("ok", "../outside/secret");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(d("ok")), "inside");
}

TEST_P(HostileTarTest, HardlinkThroughSymlinkStaysInside) {
  TarBuilder b;
  b.Symlink("s", dir_.outside()).Hardlink("h", "s/secret");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kNotFound) << stats.status();
  TarBuilder ok;
  ok.Symlink("t", "real").File("real/file", "in").Hardlink("h2", "t/file");
  stats = Run(ok.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Lstat(d("h2")).st_ino, Lstat(d("real/file")).st_ino);
}

TEST_P(HostileTarTest, HardlinkToDirectoryFails) {
  TarBuilder b;
  b.Dir("dir").Hardlink("h", "dir").Hardlink("h2", "dir/..");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  EXPECT_FALSE(stats.ok());
  EXPECT_NE(stats.status().message().find("entry \"h\""), std::string::npos) << stats.status();
}

TEST_P(HostileTarTest, ReplacingASymlinkNeverWritesThroughIt) {
  TarBuilder b;
  b.Symlink("secret", dir_.outside() + "/secret")
      .File("secret", "replaced")
      .Symlink("sub", dir_.outside() + "/sub")
      .Dir("sub", 0700);
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(d("secret")), "replaced");
  EXPECT_TRUE(S_ISDIR(Lstat(d("sub")).st_mode));
}

TEST_P(HostileTarTest, ParentIsAFileFailsNamingTheEntry) {
  TarBuilder b;
  b.File("a", "file").File("a/b", "x");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kFailedPrecondition) << stats.status();
  EXPECT_NE(stats.status().message().find("entry \"a/b\""), std::string::npos) << stats.status();
  EXPECT_NE(stats.status().message().find("Not a directory"), std::string::npos) << stats.status();
}

TEST_P(HostileTarTest, SymlinkLoopFails) {
  TarBuilder b;
  b.Symlink("l1", "l2").Symlink("l2", "l1").File("l1/x", "x");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  EXPECT_FALSE(stats.ok());
  EXPECT_NE(stats.status().message().find("entry \"l1/x\""), std::string::npos) << stats.status();
}

TEST_P(HostileTarTest, TruncatedArchiveIsDataLoss) {
  TarBuilder b;
  b.File("a", "complete").File("b", std::string(10000, 'b'));
  const std::string& tar = b.Unterminated();
  for (size_t cut : {tar.size() - 100, tar.size() - 9000, size_t{700}, size_t{100}}) {
    absl::StatusOr<ExtractStats> stats = Run(tar.substr(0, cut), {}, {1, 4096});
    EXPECT_EQ(stats.status().code(), absl::StatusCode::kDataLoss) << cut << stats.status();
  }
}

TEST_P(HostileTarTest, MissingEndMarkerIsAccepted) {
  // Like Go's archive/tar (and so containerd), a stream ending at a header boundary is a
  // complete archive.
  TarBuilder b;
  b.File("a", "complete");
  absl::StatusOr<ExtractStats> stats = Run(b.Unterminated());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(d("a")), "complete");
}

TEST_P(HostileTarTest, CorruptHeaderIsInvalidArgument) {
  TarBuilder b;
  b.File("a", "x").File("b", "y");
  std::string tar = b.Finish();
  tar[512 * 2 + 10] ^= 0x55;  // second header's name, checksum now wrong
  absl::StatusOr<ExtractStats> stats = Run(tar);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << stats.status();
  EXPECT_NE(stats.status().message().find("after entry \"a\""), std::string::npos)
      << stats.status();
}

TEST_P(HostileTarTest, GarbageIsInvalidArgument) {
  absl::StatusOr<ExtractStats> stats = Run(std::string(4096, 'z'));
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << stats.status();
}

TEST_P(HostileTarTest, MaxEntriesIsResourceExhausted) {
  TarBuilder b;
  for (int i = 0; i < 10; ++i) b.File("f" + std::to_string(i), "x");
  ExtractOptions options;
  options.max_entries = 9;
  EXPECT_EQ(Run(b.Finish(), options).status().code(), absl::StatusCode::kResourceExhausted);
  options.max_entries = 10;
  EXPECT_TRUE(Run(b.Finish(), options).ok());
}

TEST_P(HostileTarTest, StopRequestedIsCancelled) {
  TarBuilder b;
  b.File("a", "x");
  std::stop_source stop;
  stop.request_stop();
  ExtractOptions options;
  options.stop = stop.get_token();
  EXPECT_EQ(Run(b.Finish(), options).status().code(), absl::StatusCode::kCancelled);
}

TEST_P(HostileTarTest, SourceErrorIsReturnedAsIs) {
  TarBuilder b;
  b.File("a", std::string(100000, 'a')).File("b", "b");
  StringSource source(b.Finish(), {4096});
  source.FailAt(50000, absl::DataLossError("gzip: invalid block"));
  ExtractOptions options;
  options.writer_threads = GetParam();
  absl::StatusOr<ExtractStats> stats = ExtractTar(source, dir_.dest(), options);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kDataLoss) << stats.status();
  EXPECT_NE(stats.status().message().find("gzip: invalid block"), std::string::npos)
      << stats.status();
}

TEST_P(HostileTarTest, TrailingBytesAreDrainedFromTheSource) {
  TarBuilder b;
  b.File("a", "x");
  std::string tar = b.Finish() + std::string(20 * 512, '\0');
  StringSource source(tar, {512});
  ExtractOptions options;
  options.writer_threads = GetParam();
  ASSERT_TRUE(ExtractTar(source, dir_.dest(), options).ok());
  EXPECT_EQ(source.served(), tar.size());
}

TEST_P(HostileTarTest, MissingDestinationFails) {
  TarBuilder b;
  b.File("a", "x");
  StringSource source(b.Finish(), {512});
  ExtractOptions options;
  options.writer_threads = GetParam();
  EXPECT_EQ(ExtractTar(source, dir_.dest() + "/missing", options).status().code(),
            absl::StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Threads, HostileTarTest, ::testing::Values(1, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == 1 ? std::string("Inline")
                                                  : "Threads" + std::to_string(info.param);
                         });

}  // namespace
}  // namespace zsnap::unpack::testing
