#include "overlay/snapshotter.h"

#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "overlay/mounts.h"
#include "overlay/overlay_snapshotter.h"
#include "spdlog/spdlog.h"
#include "tests/overlay/test_util.h"

namespace zsnap::overlay {
namespace {

using ::testing::ElementsAre;
using testing::Exists;
using testing::TempDir;
using testing::WriteFile;

const int kQuietLogs = [] {
  spdlog::set_level(spdlog::level::warn);
  return 0;
}();

class SnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    sn_.reset();
    absl::StatusOr<std::unique_ptr<Snapshotter>> s = Snapshotter::Open(
        {.root = root(), .userxattr = SnapshotterOptions::UserXattr::kOff, .durable = false});
    ASSERT_TRUE(s.ok()) << s.status();
    sn_ = *std::move(s);
  }

  std::string root() const { return dir_.Sub("root"); }
  std::string snapshots() const { return root() + "/snapshots"; }
  std::string Upper(const std::string& key) { return *sn_->UpperDir(key); }

  // Prepare + commit of one layer holding `files`.
  void Layer(const std::string& name, const std::string& parent,
             const std::map<std::string, std::string>& files = {}) {
    const std::string key = name + "-active";
    ASSERT_TRUE(sn_->Prepare(key, parent, {}).ok());
    for (const auto& [path, content] : files) WriteFile(Upper(key) + "/" + path, content);
    ASSERT_TRUE(sn_->Commit(name, key, {}, "").ok());
  }

  TempDir dir_;
  std::unique_ptr<Snapshotter> sn_;
};

TEST_F(SnapshotterTest, LayoutAndMountsOfAChain) {
  const bool index_off = OverlayHasIndexParam();
  absl::StatusOr<std::vector<Mount>> m = sn_->Prepare("a", "", {});
  ASSERT_TRUE(m.ok()) << m.status();
  const std::string a_fs = Upper("a");
  EXPECT_THAT(*m, ElementsAre(Mount{"bind", a_fs, {"rw", "rbind"}}));
  EXPECT_EQ(a_fs.rfind(snapshots() + "/", 0), 0u);
  EXPECT_TRUE(Exists(a_fs));
  EXPECT_TRUE(Exists(a_fs.substr(0, a_fs.size() - 2) + "work"));
  EXPECT_EQ(*sn_->Mounts("a"), *m);

  ASSERT_TRUE(sn_->Commit("c1", "a", {}, "").ok());
  EXPECT_EQ(Upper("c1"), a_fs) << "commit keeps the directory";
  EXPECT_EQ(sn_->Mounts("c1").status().code(), absl::StatusCode::kFailedPrecondition);

  m = sn_->View("v1", "c1", {});
  ASSERT_TRUE(m.ok());
  EXPECT_THAT(*m, ElementsAre(Mount{"bind", a_fs, {"ro", "rbind"}}));
  EXPECT_FALSE(Exists(Upper("v1").substr(0, Upper("v1").size() - 2) + "work"));

  Layer("c2", "c1");
  m = sn_->Prepare("b", "c2", {});
  ASSERT_TRUE(m.ok());
  const std::string b_fs = Upper("b");
  const std::string b_work = b_fs.substr(0, b_fs.size() - 2) + "work";
  std::vector<std::string> options;
  if (index_off) options.push_back("index=off");
  options.push_back("workdir=" + b_work);
  options.push_back("upperdir=" + b_fs);
  options.push_back("lowerdir=" + Upper("c2") + ":" + a_fs);
  EXPECT_THAT(*m, ElementsAre(Mount{"overlay", "overlay", options}));

  m = sn_->View("v2", "c2", {});
  ASSERT_TRUE(m.ok());
  std::vector<std::string> view_options;
  if (index_off) view_options.push_back("index=off");
  view_options.push_back("lowerdir=" + Upper("c2") + ":" + a_fs);
  EXPECT_THAT(*m, ElementsAre(Mount{"overlay", "overlay", view_options}));
}

TEST_F(SnapshotterTest, ErrorCodes) {
  EXPECT_EQ(sn_->Prepare("a", "missing", {}).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  ASSERT_TRUE(sn_->View("v", "", {}).ok());
  EXPECT_EQ(sn_->Prepare("a", "", {}).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(sn_->View("a", "", {}).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(sn_->Prepare("b", "a", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sn_->Prepare("b", "", {{"k", std::string(5000, 'v')}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sn_->Commit("c", "missing", {}, "").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sn_->Commit("c", "v", {}, "").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(sn_->Commit("c", "a", {{"k", std::string(5000, 'v')}}, "").code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(sn_->Commit("c", "a", {}, "").ok());
  EXPECT_EQ(sn_->Stat("a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sn_->View("c", "", {}).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(sn_->Prepare("a2", "", {}).ok());
  EXPECT_EQ(sn_->Commit("c", "a2", {}, "").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(sn_->Mounts("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sn_->Stat("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sn_->GetUsage("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sn_->UpperDir("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sn_->Remove("missing").code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(sn_->Prepare("child", "c", {}).ok());
  const absl::Status busy = sn_->Remove("c");
  EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(busy.message().find("remove"), absl::string_view::npos);
  EXPECT_EQ(sn_->List({"name=="}).status().code(), absl::StatusCode::kInvalidArgument);

  Info info;
  info.name = "c";
  EXPECT_EQ(sn_->Update(info, {"parent"}).status().code(), absl::StatusCode::kInvalidArgument);
  info.labels = {{"k", std::string(5000, 'v')}};
  EXPECT_EQ(sn_->Update(info, {}).status().code(), absl::StatusCode::kInvalidArgument);
  info.name = "missing";
  info.labels = {};
  EXPECT_EQ(sn_->Update(info, {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SnapshotterTest, StatTimestampsAndCommitLabels) {
  const absl::Time before = absl::Now();
  ASSERT_TRUE(sn_->Prepare("a", "", {{"keep", "no"}, {"empty", ""}}).ok());
  const absl::Time after = absl::Now();
  absl::StatusOr<Info> a = sn_->Stat("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->name, "a");
  EXPECT_EQ(a->kind, Kind::kActive);
  EXPECT_EQ(a->parent, "");
  EXPECT_EQ(a->labels, (Labels{{"keep", "no"}}));
  EXPECT_EQ(a->created, a->updated);
  EXPECT_LE(before, a->created);
  EXPECT_GE(after, a->created);

  ASSERT_TRUE(sn_->Commit("c", "a", {{"new", "1"}}, "").ok());
  absl::StatusOr<Info> c = sn_->Stat("c");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, Kind::kCommitted);
  EXPECT_EQ(c->labels, (Labels{{"new", "1"}}));
  EXPECT_EQ(c->created, c->updated);
  EXPECT_GT(c->created, a->created) << "commit stamps new timestamps";

  ASSERT_TRUE(sn_->View("v", "c", {}).ok());
  EXPECT_EQ(sn_->Stat("v")->parent, "c");
  EXPECT_EQ(sn_->Stat("v")->kind, Kind::kView);
}

TEST_F(SnapshotterTest, CommitRebaseGraftsAParentlessActive) {
  Layer("base", "", {{"f", "1"}});
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  ASSERT_TRUE(sn_->Commit("c", "a", {}, "base").ok());
  EXPECT_EQ(sn_->Stat("c")->parent, "base");
  absl::StatusOr<std::vector<Mount>> m = sn_->View("v", "c", {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->back().options.back(), "lowerdir=" + Upper("c") + ":" + Upper("base"));
  Layer("other", "");
  ASSERT_TRUE(sn_->Prepare("b", "base", {}).ok());
  EXPECT_EQ(sn_->Commit("d", "b", {}, "other").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SnapshotterTest, UpdateLabels) {
  ASSERT_TRUE(sn_->Prepare("a", "", {{"l1", "1"}}).ok());
  Info info = *sn_->Stat("a");
  info.labels = {{"l2", "2"}};
  absl::StatusOr<Info> out = sn_->Update(info, {});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->labels, (Labels{{"l2", "2"}}));
  info.labels = {{"l1", "x"}};
  out = sn_->Update(info, {"labels.l1"});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->labels, (Labels{{"l1", "x"}, {"l2", "2"}}));
  EXPECT_EQ(*sn_->Stat("a"), *out);
}

TEST_F(SnapshotterTest, ListWithFilters) {
  absl::StatusOr<std::vector<Info>> none = sn_->List({});
  ASSERT_TRUE(none.ok()) << "an empty store lists fine";
  EXPECT_TRUE(none->empty());

  Layer("p", "");
  ASSERT_TRUE(sn_->Prepare("a1", "p", {{"l", "1"}}).ok());
  ASSERT_TRUE(sn_->View("v1", "p", {{"l", "2"}}).ok());
  ASSERT_TRUE(sn_->Prepare("a2", "", {}).ok());

  const auto names = [&](const std::vector<std::string>& filters) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<Info>> infos = sn_->List(filters);
    EXPECT_TRUE(infos.ok()) << infos.status();
    if (infos.ok()) {
      for (const Info& i : *infos) out.push_back(i.name);
    }
    return out;
  };
  EXPECT_THAT(names({}), ElementsAre("a1", "a2", "p", "v1"));
  EXPECT_THAT(names({"kind==active"}), ElementsAre("a1", "a2"));
  EXPECT_THAT(names({"parent==p"}), ElementsAre("a1", "v1"));
  EXPECT_THAT(names({"parent!=\"\""}), ElementsAre("a1", "v1"));
  EXPECT_THAT(names({"labels.l"}), ElementsAre("a1", "v1"));
  EXPECT_THAT(names({"labels.l==2"}), ElementsAre("v1"));
  EXPECT_THAT(names({"name==a2", "name==p"}), ElementsAre("a2", "p"));
  EXPECT_THAT(names({"kind==active,labels.l==1"}), ElementsAre("a1"));

  // Infos from List equal Stat's, and Stat works while the result is being consumed.
  absl::StatusOr<std::vector<Info>> all = sn_->List({});
  ASSERT_TRUE(all.ok());
  for (const Info& info : *all) EXPECT_EQ(*sn_->Stat(info.name), info);
}

TEST_F(SnapshotterTest, Usage) {
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  absl::StatusOr<Usage> empty = sn_->GetUsage("a");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->inodes, 1);
  WriteFile(Upper("a") + "/f", std::string(100000, 'x'));
  ASSERT_EQ(link((Upper("a") + "/f").c_str(), (Upper("a") + "/g").c_str()), 0);
  absl::StatusOr<Usage> live = sn_->GetUsage("a");
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->inodes, 2) << "hard links count once";
  EXPECT_GE(live->size, 100000);

  ASSERT_TRUE(sn_->Commit("c", "a", {}, "").ok());
  WriteFile(Upper("c") + "/late", std::string(100000, 'y'));
  EXPECT_EQ(*sn_->GetUsage("c"), *live) << "committed usage is the value stored at Commit";

  ASSERT_TRUE(sn_->View("v", "c", {}).ok());
  EXPECT_EQ(*sn_->GetUsage("v"), Usage{});
}

TEST_F(SnapshotterTest, CommitMeasuringLaterMeasuresOnceAtTheFirstUsage) {
  ASSERT_TRUE(sn_->Prepare("a", "", {{"l", "v"}}).ok());
  WriteFile(Upper("a") + "/f", std::string(100000, 'x'));
  ASSERT_EQ(mkdir((Upper("a") + "/d").c_str(), 0755), 0);
  absl::StatusOr<Usage> live = sn_->GetUsage("a");
  ASSERT_TRUE(live.ok());
  ASSERT_TRUE(sn_->CommitMeasuringLater("c", "a", {{"l", "v"}}).ok());
  absl::StatusOr<Info> info = sn_->Stat("c");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, Kind::kCommitted);
  EXPECT_EQ(info->labels.at("l"), "v");
  EXPECT_TRUE(absl::IsNotFound(sn_->Stat("a").status()));

  // Nothing was measured at the commit: a file the writer added afterwards (the remote path
  // never does) is counted by the first GetUsage, after a restart too.
  WriteFile(Upper("c") + "/after-commit", "z");
  Open();
  absl::StatusOr<Usage> first = sn_->GetUsage("c");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->inodes, live->inodes + 1);
  EXPECT_GT(first->size, live->size);
  // ...which stores it: later changes to the tree are not seen again.
  WriteFile(Upper("c") + "/late", std::string(100000, 'y'));
  EXPECT_EQ(*sn_->GetUsage("c"), *first);
  Open();
  EXPECT_EQ(*sn_->GetUsage("c"), *first);

  // The measured-later snapshot is a parent like any other and removes cleanly.
  ASSERT_TRUE(sn_->View("v", "c", {}).ok());
  EXPECT_EQ(*sn_->GetUsage("v"), Usage{});
  ASSERT_TRUE(sn_->Remove("v").ok());
  ASSERT_TRUE(sn_->Remove("c").ok());
  EXPECT_TRUE(absl::IsNotFound(sn_->GetUsage("c").status()));
}

TEST_F(SnapshotterTest, CommitMeasuringLaterChecksLikeCommit) {
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  ASSERT_TRUE(sn_->Prepare("b", "", {}).ok());
  ASSERT_TRUE(sn_->Commit("c", "a", {}, "").ok());
  EXPECT_TRUE(absl::IsAlreadyExists(sn_->CommitMeasuringLater("c", "b", {})));
  EXPECT_TRUE(absl::IsNotFound(sn_->CommitMeasuringLater("d", "missing", {})));
  EXPECT_TRUE(absl::IsFailedPrecondition(sn_->CommitMeasuringLater("d", "c", {})));
}

TEST_F(SnapshotterTest, RootOfANewActiveIs0755WhateverTheUmask) {
  const mode_t old = umask(0077);
  absl::StatusOr<std::vector<Mount>> m = sn_->Prepare("a", "", {});
  umask(old);
  ASSERT_TRUE(m.ok());
  struct stat st;
  ASSERT_EQ(stat(Upper("a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_F(SnapshotterTest, NewUpperTakesTheParentsOwner) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  Layer("p", "");
  ASSERT_EQ(chown(Upper("p").c_str(), 1234, 5678), 0);
  ASSERT_TRUE(sn_->Prepare("a", "p", {}).ok());
  struct stat st;
  ASSERT_EQ(stat(Upper("a").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
}

TEST_F(SnapshotterTest, RemoveDeletesTheDirectoryAndFreesTheKey) {
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  const std::string fs = Upper("a");
  WriteFile(fs + "/f", "x");
  ASSERT_TRUE(sn_->Remove("a").ok());
  EXPECT_FALSE(Exists(fs));
  EXPECT_FALSE(Exists(fs.substr(0, fs.size() - 3)));
  ASSERT_TRUE(sn_->View("a", "", {}).ok()) << "the key can be reused";
  EXPECT_NE(Upper("a"), fs) << "with a new id";
  absl::StatusOr<std::vector<std::string>> left = ListDir(snapshots());
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->size(), 1u) << "no trash left behind";
}

TEST_F(SnapshotterTest, CleanupRemovesUnknownDirectoriesAndKeepsKnownOnes) {
  Layer("c", "", {{"f", "data"}});
  ASSERT_TRUE(sn_->Prepare("a", "c", {}).ok());
  ASSERT_EQ(mkdir((snapshots() + "/new-leftover").c_str(), 0700), 0);
  ASSERT_EQ(mkdir((snapshots() + "/rm-leftover").c_str(), 0700), 0);
  ASSERT_EQ(mkdir((snapshots() + "/9999").c_str(), 0700), 0);
  ASSERT_EQ(mkdir((snapshots() + "/9999/fs").c_str(), 0700), 0);
  WriteFile(snapshots() + "/9999/fs/file", "orphan");
  WriteFile(snapshots() + "/stray-file", "x");

  ASSERT_TRUE(sn_->Cleanup().ok());
  absl::StatusOr<std::vector<std::string>> left = ListDir(snapshots());
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->size(), 2u);
  EXPECT_TRUE(Exists(Upper("c") + "/f"));
  EXPECT_TRUE(Exists(Upper("a")));
  EXPECT_FALSE(Exists(snapshots() + "/9999"));
}

TEST_F(SnapshotterTest, OpenCleansOrphansLeftByACrash) {
  Layer("c", "");
  // As if a crash hit between the rename into place and the commit: the next id's directory.
  const std::string fs = Upper("c");
  const int64_t next_id = std::stoll(fs.substr(snapshots().size() + 1)) + 1;
  const std::string stale = absl::StrCat(snapshots(), "/", next_id);
  ASSERT_EQ(mkdir(stale.c_str(), 0700), 0);
  ASSERT_EQ(mkdir((stale + "/fs").c_str(), 0755), 0);
  WriteFile(stale + "/fs/stale", "x");
  ASSERT_EQ(mkdir((snapshots() + "/new-crash").c_str(), 0700), 0);
  Open();
  EXPECT_FALSE(Exists(stale + "/fs/stale"));
  EXPECT_FALSE(Exists(snapshots() + "/new-crash"));
  EXPECT_TRUE(Exists(fs));
}

TEST_F(SnapshotterTest, PrepareMovesAsideAStaleDirectoryWithItsId) {
  // Without the cleanup at Open (e.g. it raced), a stale <id> must not break Prepare.
  absl::StatusOr<std::unique_ptr<OverlaySnapshotter>> direct =
      OverlaySnapshotter::OpenWithConfig({.root = dir_.Sub("root2"), .durable = false}, {});
  ASSERT_TRUE(direct.ok());
  const std::string stale = dir_.Sub("root2") + "/snapshots/1";
  ASSERT_EQ(mkdir(stale.c_str(), 0700), 0);
  ASSERT_EQ(mkdir((stale + "/fs").c_str(), 0700), 0);
  WriteFile(stale + "/fs/stale", "x");
  ASSERT_TRUE((*direct)->Prepare("a", "", {}).ok());
  EXPECT_EQ(*(*direct)->UpperDir("a"), stale + "/fs");
  EXPECT_FALSE(Exists(stale + "/fs/stale"));
  EXPECT_TRUE(Exists(stale + "/work"));
  absl::StatusOr<std::vector<std::string>> left = ListDir(dir_.Sub("root2") + "/snapshots");
  EXPECT_EQ(left->size(), 1u);
}

TEST_F(SnapshotterTest, ReopenKeepsEverything) {
  Layer("c", "", {{"f", "data"}});
  ASSERT_TRUE(sn_->Prepare("a", "c", {{"l", "v"}}).ok());
  ASSERT_TRUE(sn_->View("v", "c", {}).ok());
  const std::vector<Info> before = *sn_->List({});
  const std::vector<Mount> mounts = *sn_->Mounts("a");
  const Usage usage = *sn_->GetUsage("c");
  Open();
  EXPECT_EQ(*sn_->List({}), before);
  EXPECT_EQ(*sn_->Mounts("a"), mounts);
  EXPECT_EQ(*sn_->GetUsage("c"), usage);
  EXPECT_TRUE(Exists(Upper("c") + "/f"));
  EXPECT_EQ(sn_->root(), root());
}

TEST_F(SnapshotterTest, RootIsCreated0700) {
  struct stat st;
  ASSERT_EQ(stat(root().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat(snapshots().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(Exists(root() + "/metadata.db"));
}

TEST_F(SnapshotterTest, DurableModeWorks) {
  absl::StatusOr<std::unique_ptr<Snapshotter>> s = Snapshotter::Open(
      {.root = dir_.Sub("durable"), .userxattr = SnapshotterOptions::UserXattr::kOn});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->Prepare("a", "", {}).ok());
  ASSERT_TRUE((*s)->Commit("c", "a", {}, "").ok());
  absl::StatusOr<std::vector<Mount>> m = (*s)->Prepare("b", "c", {});
  ASSERT_TRUE(m.ok());
  EXPECT_THAT(m->front().options, ::testing::Contains("userxattr"));
}

TEST_F(SnapshotterTest, HundredTwentyEightLayerChain) {
  std::string parent;
  std::vector<std::string> lower;
  for (int i = 0; i < 128; ++i) {
    const std::string name = "layer" + std::to_string(i);
    Layer(name, parent);
    lower.insert(lower.begin(), Upper(name));
    parent = name;
  }
  absl::StatusOr<std::vector<Mount>> m = sn_->View("top", parent, {});
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ(m->front().type, "overlay");
  EXPECT_EQ(m->front().options.back(), "lowerdir=" + absl::StrJoin(lower, ":"));
  m = sn_->Prepare("rw", parent, {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->front().options.back(), "lowerdir=" + absl::StrJoin(lower, ":"));
}

}  // namespace
}  // namespace zsnap::overlay
