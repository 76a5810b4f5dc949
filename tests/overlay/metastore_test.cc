#include "overlay/metastore.h"

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/overlay/test_util.h"

namespace zsnap::overlay {
namespace {

class MetaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<MetaStore>> s =
        MetaStore::Open(dir_.Sub("metadata.db"), /*durable=*/false);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  absl::StatusOr<SnapshotRef> Create(Kind kind, const std::string& key, const std::string& parent,
                                     const Labels& labels = {}) {
    absl::StatusOr<SnapshotRef> ref;
    absl::Status s = store_->Update([&](StoreTx& tx) {
      ref = tx.CreateSnapshot(kind, key, parent, labels);
      return ref.status();
    });
    if (!s.ok()) return s;
    return ref;
  }

  absl::Status Commit(const std::string& name, const std::string& key, const Labels& labels = {},
                      const std::string& parent = "", Usage usage = {}) {
    return store_->Update(
        [&](StoreTx& tx) { return tx.CommitActive(key, name, usage, labels, parent).status(); });
  }

  absl::StatusOr<SnapshotRecord> Get(const std::string& key) {
    absl::StatusOr<SnapshotRecord> rec;
    absl::Status s = store_->View([&](StoreTx& tx) {
      rec = tx.GetInfo(key);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return rec;
  }

  absl::Status Remove(const std::string& key) {
    return store_->Update([&](StoreTx& tx) { return tx.Remove(key).status(); });
  }

  absl::StatusOr<Info> UpdateInfo(const Info& info, const std::vector<std::string>& paths) {
    absl::StatusOr<Info> out;
    absl::Status s = store_->Update([&](StoreTx& tx) {
      out = tx.UpdateInfo(info, paths);
      return out.status();
    });
    if (!s.ok()) return s;
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<MetaStore> store_;
};

TEST_F(MetaStoreTest, CreateGetCommitRemove) {
  const absl::Time before = absl::Now();
  absl::StatusOr<SnapshotRef> a = Create(Kind::kActive, "a", "", {{"l", "1"}, {"empty", ""}});
  const absl::Time after = absl::Now();
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_GT(a->id, 0);
  EXPECT_TRUE(a->parent_ids.empty());

  absl::StatusOr<SnapshotRecord> rec = Get("a");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->id, a->id);
  EXPECT_EQ(rec->info.name, "a");
  EXPECT_EQ(rec->info.kind, Kind::kActive);
  EXPECT_EQ(rec->info.parent, "");
  EXPECT_EQ(rec->info.labels, (Labels{{"l", "1"}}));
  EXPECT_EQ(rec->info.created, rec->info.updated);
  EXPECT_LE(before, rec->info.created);
  EXPECT_GE(after, rec->info.created);

  ASSERT_TRUE(Commit("c", "a", {{"new", "x"}}, "", Usage{4096, 3}).ok());
  EXPECT_EQ(Get("a").status().code(), absl::StatusCode::kNotFound);
  rec = Get("c");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->id, a->id) << "commit keeps the id (and so the directory)";
  EXPECT_EQ(rec->info.kind, Kind::kCommitted);
  EXPECT_EQ(rec->info.labels, (Labels{{"new", "x"}})) << "labels replaced, not inherited";
  EXPECT_EQ(rec->usage, (Usage{4096, 3}));
  EXPECT_EQ(rec->info.created, rec->info.updated);

  absl::StatusOr<SnapshotRef> child = Create(Kind::kView, "v", "c");
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(child->parent_ids, std::vector<int64_t>{a->id});
  EXPECT_EQ(Get("v")->info.parent, "c");

  absl::Status busy = Remove("c");
  EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(busy.message().find("cannot remove snapshot with child"), absl::string_view::npos);
  ASSERT_TRUE(Remove("v").ok());
  ASSERT_TRUE(Remove("c").ok());
  EXPECT_EQ(Remove("c").code(), absl::StatusCode::kNotFound);
}

TEST_F(MetaStoreTest, ErrorCodes) {
  ASSERT_TRUE(Create(Kind::kActive, "a", "").ok());
  ASSERT_TRUE(Create(Kind::kView, "v", "").ok());
  EXPECT_EQ(Create(Kind::kActive, "a", "").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Create(Kind::kView, "a", "").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Create(Kind::kActive, "b", "missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Create(Kind::kActive, "b", "a").status().code(),
            absl::StatusCode::kInvalidArgument);  // parent not committed
  EXPECT_EQ(Create(Kind::kCommitted, "b", "").status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(Commit("c", "missing").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Commit("c", "v").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Commit("v", "a").code(), absl::StatusCode::kAlreadyExists);  // shared key space
  ASSERT_TRUE(Commit("c", "a").ok());
  EXPECT_EQ(Create(Kind::kView, "c", "").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Commit("d", "c").code(), absl::StatusCode::kFailedPrecondition);  // not Active

  EXPECT_EQ(
      store_
          ->View([](StoreTx& tx) { return tx.CreateSnapshot(Kind::kActive, "x", "", {}).status(); })
          .code(),
      absl::StatusCode::kFailedPrecondition)
      << "no writes in a read transaction";
}

TEST_F(MetaStoreTest, FailedCallbackRollsBackEverything) {
  ASSERT_TRUE(Create(Kind::kActive, "base", "").ok());
  bool undone = false;
  const absl::Status s = store_->Update(
      [&](StoreTx& tx) -> absl::Status {
        EXPECT_TRUE(tx.CreateSnapshot(Kind::kActive, "a", "", {{"l", "1"}}).ok());
        EXPECT_TRUE(tx.CommitActive("base", "c", {}, {}, "").ok());
        return absl::InternalError("boom");
      },
      [&] { undone = true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(undone) << "undo is for a failed commit, not a failed callback";
  EXPECT_EQ(Get("a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Get("c").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(Get("base").ok());
  EXPECT_EQ(Get("base")->info.kind, Kind::kActive);
}

TEST_F(MetaStoreTest, IdsAreNeverReusedAfterACommittedRemove) {
  absl::StatusOr<SnapshotRef> a = Create(Kind::kActive, "a", "");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(Remove("a").ok());
  absl::StatusOr<SnapshotRef> b = Create(Kind::kActive, "a", "");
  ASSERT_TRUE(b.ok());
  EXPECT_GT(b->id, a->id);
}

TEST_F(MetaStoreTest, CommitParentRebase) {
  ASSERT_TRUE(Create(Kind::kActive, "base-a", "").ok());
  ASSERT_TRUE(Commit("base", "base-a").ok());
  ASSERT_TRUE(Create(Kind::kActive, "other-a", "").ok());
  ASSERT_TRUE(Commit("other", "other-a").ok());

  // A parentless Active is grafted onto the given parent.
  ASSERT_TRUE(Create(Kind::kActive, "a", "").ok());
  ASSERT_TRUE(Commit("c", "a", {}, "base").ok());
  EXPECT_EQ(Get("c")->info.parent, "base");

  // The same parent again is fine, a different one is not.
  ASSERT_TRUE(Create(Kind::kActive, "b", "base").ok());
  EXPECT_EQ(Commit("d", "b", {}, "other").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Commit("d", "b", {}, "missing").code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(Commit("d", "b", {}, "base").ok());
  EXPECT_EQ(Get("d")->info.parent, "base");

  // Grafting onto a non-committed snapshot is refused.
  ASSERT_TRUE(Create(Kind::kActive, "e", "").ok());
  ASSERT_TRUE(Create(Kind::kActive, "f", "").ok());
  EXPECT_EQ(Commit("g", "e", {}, "f").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MetaStoreTest, UpdateMasks) {
  ASSERT_TRUE(Create(Kind::kActive, "a", "", {{"l1", "v1"}, {"l2", "v2"}}).ok());
  const Info original = Get("a")->info;

  Info req = original;
  req.labels = {{"l1", "n1"}, {"l3", "n3"}};
  req.parent = "ignored";
  req.kind = Kind::kCommitted;
  absl::StatusOr<Info> out = UpdateInfo(req, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->labels, (Labels{{"l1", "n1"}, {"l3", "n3"}}));
  EXPECT_EQ(out->kind, Kind::kActive);
  EXPECT_EQ(out->parent, "");
  EXPECT_EQ(out->created, original.created);
  EXPECT_GT(out->updated, original.updated);
  EXPECT_EQ(Get("a")->info, *out);

  req.labels = {{"l1", "m1"}, {"l2", "m2"}};
  out = UpdateInfo(req, {"labels.l2", "labels.l3"});  // set l2, delete l3 (absent in request)
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->labels, (Labels{{"l1", "n1"}, {"l2", "m2"}}));

  req.labels = {{"l1", ""}, {"x", "y"}};
  out = UpdateInfo(req, {"labels"});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->labels, (Labels{{"x", "y"}})) << "empty values are dropped";
  EXPECT_EQ(Get("a")->info.labels, (Labels{{"x", "y"}}));

  req.labels = {{"x", ""}};
  out = UpdateInfo(req, {"labels.x"});
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out->labels.empty());

  for (const std::string& path : std::vector<std::string>{"parent", "name", "kind", "created"}) {
    EXPECT_EQ(UpdateInfo(req, {path}).status().code(), absl::StatusCode::kInvalidArgument) << path;
  }
  EXPECT_EQ(UpdateInfo(req, {"labels.a", "parent"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  req.name = "missing";
  EXPECT_EQ(UpdateInfo(req, {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(MetaStoreTest, ListAllIdsAndReopen) {
  absl::StatusOr<std::vector<Info>> empty;
  ASSERT_TRUE(store_
                  ->View([&](StoreTx& tx) {
                    empty = tx.ListAll();
                    return empty.status();
                  })
                  .ok());
  EXPECT_TRUE(empty->empty()) << "an empty store lists fine";

  ASSERT_TRUE(Create(Kind::kActive, "b", "", {{"k", "v"}}).ok());
  ASSERT_TRUE(Commit("c", "b").ok());
  ASSERT_TRUE(Create(Kind::kView, "a", "c", {{"k", "w"}}).ok());
  const Info a = Get("a")->info;
  const Info c = Get("c")->info;
  Reopen();

  absl::StatusOr<std::vector<Info>> all;
  absl::StatusOr<absl::flat_hash_set<int64_t>> ids;
  ASSERT_TRUE(store_
                  ->View([&](StoreTx& tx) {
                    all = tx.ListAll();
                    ids = tx.Ids();
                    return absl::OkStatus();
                  })
                  .ok());
  ASSERT_TRUE(all.ok() && ids.ok());
  EXPECT_EQ(*all, (std::vector<Info>{a, c})) << "ordered by key, timestamps exact after reopen";
  EXPECT_EQ(ids->size(), 2u);
  EXPECT_TRUE(ids->contains(Get("a")->id));
}

TEST_F(MetaStoreTest, DeepParentChain) {
  std::string parent;
  std::vector<int64_t> ids;
  for (int i = 0; i < 128; ++i) {
    const std::string key = "a" + std::to_string(i);
    absl::StatusOr<SnapshotRef> ref = Create(Kind::kActive, key, parent);
    ASSERT_TRUE(ref.ok());
    ids.insert(ids.begin(), ref->id);
    parent = "c" + std::to_string(i);
    ASSERT_TRUE(Commit(parent, key).ok());
  }
  absl::StatusOr<SnapshotRef> top = Create(Kind::kView, "top", parent);
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(top->parent_ids, ids);
}

TEST_F(MetaStoreTest, KeysAreBytes) {
  const std::string odd("k\0ey/\xe2\x82\xac", 8);
  ASSERT_TRUE(Create(Kind::kActive, odd, "").ok());
  absl::StatusOr<SnapshotRecord> rec = Get(odd);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->info.name, odd);
  EXPECT_EQ(Get("k").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace zsnap::overlay
