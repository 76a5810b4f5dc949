// ExtractTar against containerd's applier semantics (archive.applyNaive with
// OverlayConvertWhiteout): formats, entry types, metadata, ordering, replacement. Every test
// runs inline and with writer threads, and with chunk sizes from 1 byte up, so libarchive's
// callback boundaries fall everywhere. Confinement and errors: tar_extractor_hostile_test.cc.
#include "unpack/tar_extractor.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unpack/tar_builder.h"
#include "tests/unpack/tar_test_util.h"

namespace zsnap::unpack::testing {
namespace {

struct Mode {
  const char* name;
  int threads;
  std::vector<size_t> chunks;
};

class TarExtractorTest : public ::testing::TestWithParam<Mode> {
 protected:
  absl::StatusOr<ExtractStats> Run(const std::string& tar, ExtractOptions options = {}) {
    options.writer_threads = GetParam().threads;
    return Extract(tar, dir_.dest(), options, GetParam().chunks);
  }
  std::string d(const std::string& rel) const { return dir_.d(rel); }

  ScratchDir dir_;
};

TEST_P(TarExtractorTest, UstarFilesDirsAndMetadata) {
  TarBuilder b;
  b.Dir("etc/", 0750).File("etc/hostname", "box\n", 0640).File("etc/empty", "");
  TarHeader h;
  h.name = "etc/owned";
  h.uid = 1234;
  h.gid = 5678;
  h.mtime = 1234567890;
  b.Add(h, "data");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->entries, 4u);
  EXPECT_EQ(stats->file_bytes, 8u);
  EXPECT_EQ(ReadFile(d("etc/hostname")), "box\n");
  EXPECT_EQ(Lstat(d("etc/hostname")).st_mode, S_IFREG | 0640);
  EXPECT_EQ(Lstat(d("etc")).st_mode, S_IFDIR | 0750);
  EXPECT_EQ(Lstat(d("etc/empty")).st_size, 0);
  struct stat st = Lstat(d("etc/owned"));
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(st.st_atim.tv_sec, 1234567890);  // no atime in the header: atime = mtime
  if (IsRoot()) {
    EXPECT_EQ(st.st_uid, 1234u);
    EXPECT_EQ(st.st_gid, 5678u);
  }
}

TEST_P(TarExtractorTest, PaxLongNamesAndLinks) {
  std::string dir = std::string(120, 'd');
  std::string deep = dir + "/" + std::string(200, 'f');
  std::string target = "/" + std::string(150, 't');
  TarBuilder b;
  b.Dir(dir).File(deep, "long").Symlink("link", target).Hardlink(dir + "/hard", deep);
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(d(deep)), "long");
  EXPECT_EQ(std::filesystem::read_symlink(d("link")).string(), target);
  EXPECT_EQ(Lstat(d(dir + "/hard")).st_ino, Lstat(d(deep)).st_ino);
}

TEST_P(TarExtractorTest, GnuLongNamesAndLinks) {
  std::string name = "gnu/" + std::string(180, 'n');
  std::string link = "gnu/" + std::string(170, 'l');
  TarBuilder b;
  TarHeader ln;
  ln.name = "././@LongLink";
  ln.typeflag = 'L';
  ln.size = name.size() + 1;
  b.AddRaw(ln, name + '\0');
  b.File(name.substr(0, 99), "gnu data");
  TarHeader ll = ln;
  ll.typeflag = 'K';
  ll.size = name.size() + 1;
  b.AddRaw(ll, name + '\0');
  ln.size = link.size() + 1;
  b.AddRaw(ln, link + '\0');
  TarHeader sym;
  sym.name = "x";
  sym.typeflag = '2';
  sym.linkname = "y";
  b.Add(sym);
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(d(name)), "gnu data");
  EXPECT_EQ(std::filesystem::read_symlink(d(link)).string(), name);
}

TEST_P(TarExtractorTest, PaxXattrsIncludingCapabilities) {
  ZSNAP_REQUIRE_ROOT();
  // A v2 file capability: cap_net_bind_service (bit 10) permitted + effective.
  std::string cap(
      "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  TarHeader h;
  h.name = "bin/ping";
  h.mode = 04755;
  h.uid = 0;
  h.pax["SCHILY.xattr.security.capability"] = cap;
  h.pax["SCHILY.xattr.user.note"] = "hello";
  h.pax["SCHILY.xattr.trusted.overlay.opaque"] = "y";  // refused, as containerd does
  TarHeader dir;
  dir.name = "data";
  dir.typeflag = '5';
  dir.mode = 0755;
  dir.pax["SCHILY.xattr.user.dir"] = "d";
  TarBuilder b;
  b.Add(h, "ELF").Add(dir);
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Xattr(d("bin/ping"), "security.capability"), cap);
  EXPECT_EQ(Xattr(d("bin/ping"), "user.note"), "hello");
  EXPECT_EQ(Xattr(d("bin/ping"), "trusted.overlay.opaque"), "<none>");
  EXPECT_EQ(Xattr(d("data"), "user.dir"), "d");
  EXPECT_EQ(Lstat(d("bin/ping")).st_mode, S_IFREG | 04755);
}

TEST_P(TarExtractorTest, SubSecondTimesAndBigIds) {
  TarHeader h;
  h.name = "f";
  h.pax["mtime"] = "1700000000.123456789";
  h.pax["atime"] = "1800000000.5";
  h.pax["uid"] = "3000000000";
  h.pax["gid"] = "2147483700";
  TarHeader old = h;
  old.name = "old";
  old.pax = {{"mtime", "1700000000.25"}, {"atime", "1600000000"}};  // atime < mtime
  TarHeader neg;
  neg.name = "neg";
  neg.pax = {{"mtime", "-100"}};  // before the epoch: containerd bounds it to 0
  TarBuilder b;
  b.Add(h, "x").Add(old).Add(neg);
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  struct stat st = Lstat(d("f"));
  EXPECT_EQ(st.st_mtim.tv_sec, 1700000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_atim.tv_sec, 1800000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 500000000);
  if (IsRoot()) {
    EXPECT_EQ(st.st_uid, 3000000000u);
    EXPECT_EQ(st.st_gid, 2147483700u);
  }
  st = Lstat(d("old"));
  EXPECT_EQ(st.st_atim.tv_sec, 1700000000);  // atime = max(atime, mtime)
  EXPECT_EQ(st.st_atim.tv_nsec, 250000000);
  EXPECT_EQ(Lstat(d("neg")).st_mtim.tv_sec, 0);
}

TEST_P(TarExtractorTest, AllEntryTypes) {
  ZSNAP_REQUIRE_ROOT();
  TarBuilder b;
  b.Dir("dev").CharDevice("dev/null", 1, 3).Fifo("dev/fifo").File("file", "content");
  TarHeader blk;
  blk.name = "dev/sda";
  blk.typeflag = '4';
  blk.mode = 0660;
  blk.gid = 6;
  blk.devmajor = 8;
  blk.devminor = 1;
  b.Add(blk);
  TarHeader sym;
  sym.name = "dev/stdin";
  sym.typeflag = '2';
  sym.linkname = "/proc/self/fd/0";
  sym.uid = 42;
  sym.gid = 43;
  sym.mtime = 1500000000;
  b.Add(sym);
  b.Hardlink("hard", "file");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  struct stat st = Lstat(d("dev/null"));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  st = Lstat(d("dev/sda"));
  EXPECT_EQ(st.st_mode, S_IFBLK | 0660);
  EXPECT_EQ(st.st_rdev, makedev(8, 1));
  EXPECT_EQ(st.st_gid, 6u);
  EXPECT_TRUE(S_ISFIFO(Lstat(d("dev/fifo")).st_mode));
  st = Lstat(d("dev/stdin"));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_uid, 42u);  // lchown, not the target
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(std::filesystem::read_symlink(d("dev/stdin")).string(), "/proc/self/fd/0");
  EXPECT_EQ(Lstat(d("hard")).st_ino, Lstat(d("file")).st_ino);
  EXPECT_EQ(Lstat(d("file")).st_nlink, 2u);
}

TEST_P(TarExtractorTest, SpecialModeBitsSurviveChown) {
  ZSNAP_REQUIRE_ROOT();
  TarBuilder b;
  TarHeader su;
  su.name = "suid";
  su.mode = 06755;
  su.uid = 1000;
  su.gid = 1000;
  b.Add(su, "binary");
  TarHeader sticky;
  sticky.name = "tmp";
  sticky.typeflag = '5';
  sticky.mode = 01777;
  b.Add(sticky);
  TarHeader sgid = sticky;
  sgid.name = "shared";
  sgid.mode = 02775;
  sgid.gid = 100;
  b.Add(sgid);
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Lstat(d("suid")).st_mode, S_IFREG | 06755);
  EXPECT_EQ(Lstat(d("suid")).st_uid, 1000u);
  EXPECT_EQ(Lstat(d("tmp")).st_mode, S_IFDIR | 01777);
  EXPECT_EQ(Lstat(d("shared")).st_mode, S_IFDIR | 02775);
}

TEST_P(TarExtractorTest, DirectoryTimesSetAfterChildren) {
  TarHeader top;
  top.name = "a";
  top.typeflag = '5';
  top.mode = 0755;
  top.mtime = 1000000000;
  TarHeader sub = top;
  sub.name = "a/b";
  sub.mtime = 1100000000;
  TarBuilder b;
  b.Add(top).Add(sub).File("a/b/c", "c").File("a/d", "d").Symlink("a/b/l", "c");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Lstat(d("a")).st_mtim.tv_sec, 1000000000);
  EXPECT_EQ(Lstat(d("a/b")).st_mtim.tv_sec, 1100000000);
}

TEST_P(TarExtractorTest, ImplicitParentsAre0755) {
  TarBuilder b;
  b.File("x/y/z/file", "f");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Lstat(d("x")).st_mode, S_IFDIR | 0755);
  EXPECT_EQ(Lstat(d("x/y/z")).st_mode, S_IFDIR | 0755);
  EXPECT_EQ(ReadFile(d("x/y/z/file")), "f");
}

TEST_P(TarExtractorTest, LaterEntriesReplaceEarlier) {
  TarBuilder b;
  b.File("f2f", "old").File("f2f", "new");
  b.File("f2d", "file").Dir("f2d").File("f2d/child", "c");
  b.Dir("d2f").File("d2f/inner", "gone").File("d2f", "now a file");
  b.Symlink("s2f", "/etc/passwd").File("s2f", "plain");
  b.File("f2s", "x").Symlink("f2s", "target");
  b.Dir("merge", 0700).File("merge/keep", "k").Dir("merge", 0751);
  b.Symlink("s2d", "merge").Dir("s2d");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(d("f2f")), "new");
  EXPECT_TRUE(S_ISDIR(Lstat(d("f2d")).st_mode));
  EXPECT_EQ(ReadFile(d("f2d/child")), "c");
  EXPECT_TRUE(S_ISREG(Lstat(d("d2f")).st_mode));
  EXPECT_EQ(ReadFile(d("d2f")), "now a file");
  EXPECT_TRUE(S_ISREG(Lstat(d("s2f")).st_mode));
  EXPECT_EQ(ReadFile(d("s2f")), "plain");
  EXPECT_TRUE(S_ISLNK(Lstat(d("f2s")).st_mode));
  EXPECT_EQ(ReadFile(d("merge/keep")), "k");  // dir over dir merges
  EXPECT_EQ(Lstat(d("merge")).st_mode, S_IFDIR | 0751);
  EXPECT_TRUE(S_ISDIR(Lstat(d("s2d")).st_mode));  // a symlink is replaced, not followed
}

// containerd's applier sets directory times in a final pass and fails on a directory that a
// later entry removed (here d2f/sub, gone when d2f became a file). zsnap fails the same layer.
TEST_P(TarExtractorTest, RemovedSubdirectoryFailsLikeContainerd) {
  TarBuilder b;
  b.Dir("d2f").Dir("d2f/sub").File("d2f", "now a file");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_FALSE(stats.ok());
  EXPECT_THAT(std::string(stats.status().message()), ::testing::HasSubstr("d2f/sub"));
}

TEST_P(TarExtractorTest, WhiteoutsBecomeCharDevices) {
  TarHeader wh;
  wh.name = "etc/.wh.passwd";
  wh.uid = 7;
  wh.gid = 8;
  TarBuilder b;
  b.Dir("etc").Add(wh).Whiteout("", "toplevel").Whiteout("deep/er", "x");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  for (const char* p : {"etc/passwd", "toplevel", "deep/er/x"}) {
    struct stat st = Lstat(d(p));
    EXPECT_EQ(st.st_mode, S_IFCHR) << p;
    EXPECT_EQ(st.st_rdev, makedev(0, 0)) << p;
  }
  if (IsRoot()) {
    EXPECT_EQ(Lstat(d("etc/passwd")).st_uid, 7u);
  }
  EXPECT_EQ(Lstat(d("etc/.wh.passwd")).st_mode, 0u);  // the marker itself is not written
}

TEST_P(TarExtractorTest, OpaqueDirectoryTrustedXattr) {
  ZSNAP_REQUIRE_ROOT();
  TarBuilder b;
  b.Dir("opq").File("opq/kept", "k").Opaque("opq").Opaque("implicit/parent");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Xattr(d("opq"), "trusted.overlay.opaque"), "y");
  EXPECT_EQ(Xattr(d("implicit/parent"), "trusted.overlay.opaque"), "y");
  EXPECT_EQ(Lstat(d("opq/.wh..wh..opq")).st_mode, 0u);
  EXPECT_EQ(ReadFile(d("opq/kept")), "k");
}

TEST_P(TarExtractorTest, OpaqueDirectoryUserXattr) {
  TarBuilder b;
  b.Dir("opq").Opaque("opq");
  ExtractOptions options;
  options.userxattr = true;
  absl::StatusOr<ExtractStats> stats = Run(b.Finish(), options);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Xattr(d("opq"), "user.overlay.opaque"), "y");
  EXPECT_EQ(Xattr(d("opq"), "trusted.overlay.opaque"), "<none>");
}

TEST_P(TarExtractorTest, InvalidWhiteoutNameFails) {
  for (const char* name : {"a/.wh.", "a/.wh..", "a/.wh..."}) {
    TarBuilder b;
    b.File(name, "");
    absl::StatusOr<ExtractStats> stats = Run(b.Finish());
    EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(stats.status().message().find("entry \""), std::string::npos) << stats.status();
  }
}

TEST_P(TarExtractorTest, WhiteoutOverExistingEntryFailsLikeContainerd) {
  TarBuilder b;
  b.File("a", "x").Whiteout("", "a");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kAlreadyExists) << stats.status();
  EXPECT_NE(stats.status().message().find("entry \".wh.a\""), std::string::npos) << stats.status();
}

TEST_P(TarExtractorTest, LargeAndManyFiles) {
  std::string big(5 * (1 << 20) + 12345, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + (i >> 13));
  TarBuilder b;
  b.File("big", big);
  for (int i = 0; i < 600; ++i) {
    b.File("many/" + std::to_string(i), std::string(static_cast<size_t>(i * 7), 'a' + i % 26));
  }
  b.File("big2", big.substr(0, 3 << 20));
  if (GetParam().chunks.front() == 1) GTEST_SKIP() << "1-byte chunks: covered by smaller tests";
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(d("big")), big);
  EXPECT_EQ(ReadFile(d("big2")), big.substr(0, 3 << 20));
  for (int i = 0; i < 600; ++i) {
    ASSERT_EQ(ReadFile(d("many/" + std::to_string(i))),
              std::string(static_cast<size_t>(i * 7), 'a' + i % 26))
        << i;
  }
}

TEST_P(TarExtractorTest, HardlinkWaitsForTargetAndAppliesItsOwnMetadata) {
  std::string data(3 << 20, 'h');
  TarHeader f;
  f.name = "target";
  f.mode = 0600;
  f.mtime = 1000000000;
  TarHeader l;
  l.name = "link";
  l.typeflag = '1';
  l.linkname = "target";
  l.mode = 0755;
  l.mtime = 1200000000;
  TarBuilder b;
  b.Add(f, data).Add(l);
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  // containerd applies the link header's metadata to the shared inode, after the target's.
  struct stat st = Lstat(d("target"));
  EXPECT_EQ(st.st_mode, S_IFREG | 0755);
  EXPECT_EQ(st.st_mtim.tv_sec, 1200000000);
  EXPECT_EQ(ReadFile(d("link")), data);
}

TEST_P(TarExtractorTest, HardlinkToSymlinkLinksTheSymlink) {
  TarBuilder b;
  b.File("real", "r").Symlink("sym", "real").Hardlink("hl", "sym");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(S_ISLNK(Lstat(d("hl")).st_mode));
  EXPECT_EQ(Lstat(d("hl")).st_ino, Lstat(d("sym")).st_ino);
}

TEST_P(TarExtractorTest, RootEntriesAreSkipped) {
  TarHeader root;
  root.name = "./";
  root.typeflag = '5';
  root.mode = 0700;
  TarBuilder b;
  b.Add(root).Dir("/").Dir("a/..").File("./x", "x");
  struct stat before = Lstat(dir_.dest());
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Lstat(dir_.dest()).st_mode, before.st_mode);
  EXPECT_EQ(ReadFile(d("x")), "x");
  EXPECT_EQ(stats->entries, 4u);
}

TEST_P(TarExtractorTest, NonAsciiNamesPassThroughAsBytes) {
  TarHeader pax;
  pax.name = "utf8-\xc3\xbc-\xe6\x97\xa5";  // short, but force PAX "path"
  pax.pax["path"] = pax.name;
  TarHeader bad;
  bad.name = "bad-utf8-\xff\xfe";
  bad.pax["path"] = bad.name;
  TarBuilder b;
  b.Add(pax, "u").File("latin1-\xe9", "l").Add(bad, "b");
  absl::StatusOr<ExtractStats> stats = Run(b.Finish());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(d("utf8-\xc3\xbc-\xe6\x97\xa5")), "u");
  EXPECT_EQ(ReadFile(d("latin1-\xe9")), "l");
  EXPECT_EQ(ReadFile(d("bad-utf8-\xff\xfe")), "b");
}

INSTANTIATE_TEST_SUITE_P(
    Modes, TarExtractorTest,
    ::testing::Values(Mode{"Inline64K", 1, {64 << 10}}, Mode{"InlineOneByte", 1, {1}},
                      Mode{"Threads4OneByte", 4, {1}}, Mode{"Threads4Odd", 4, {7, 511, 1, 4099}},
                      Mode{"Threads2Big", 2, {1 << 20}}, Mode{"Auto", 0, {3 * 512 + 1}}),
    [](const ::testing::TestParamInfo<Mode>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace zsnap::unpack::testing
