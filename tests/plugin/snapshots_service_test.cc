// Drives the real gRPC server on a unix socket, with a real overlay::Snapshotter behind it,
// through the generated client stub: what containerd's proxy client sees.
#include "plugin/snapshots_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "plugin/convert.h"
#include "plugin/server.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

class SnapshotsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    overlay::SnapshotterOptions options;
    options.root = dir_.Sub("root");
    options.durable = false;
    absl::StatusOr<std::unique_ptr<overlay::Snapshotter>> sn = overlay::Snapshotter::Open(options);
    ASSERT_TRUE(sn.ok()) << sn.status();
    snapshotter_ = *std::move(sn);
    service_ = std::make_unique<SnapshotsService>(*snapshotter_);
    socket_ = dir_.Sub("run/zsnap.sock");
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(socket_, *service_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    // As containerd dials a proxy plugin: insecure, 16 MiB messages both ways.
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    args.SetMaxSendMessageSize(kMaxMessageBytes);
    stub_ = snapshotsv1::Snapshots::NewStub(
        grpc::CreateCustomChannel("unix:" + socket_, grpc::InsecureChannelCredentials(), args));
  }

  void TearDown() override {
    stub_.reset();
    if (server_ != nullptr) {
      server_->Shutdown(absl::Seconds(5));
      server_->Wait();
    }
  }

  grpc::Status Prepare(const std::string& key, const std::string& parent,
                       std::vector<::containerd::types::Mount>* mounts = nullptr,
                       const std::map<std::string, std::string>& labels = {}) {
    snapshotsv1::PrepareSnapshotRequest req;
    req.set_snapshotter("zsnap");
    req.set_key(key);
    req.set_parent(parent);
    for (const auto& [k, v] : labels) (*req.mutable_labels())[k] = v;
    snapshotsv1::PrepareSnapshotResponse resp;
    grpc::ClientContext ctx;
    grpc::Status status = stub_->Prepare(&ctx, req, &resp);
    if (mounts != nullptr) mounts->assign(resp.mounts().begin(), resp.mounts().end());
    return status;
  }

  grpc::Status View(const std::string& key, const std::string& parent,
                    std::vector<::containerd::types::Mount>* mounts = nullptr) {
    snapshotsv1::ViewSnapshotRequest req;
    req.set_key(key);
    req.set_parent(parent);
    snapshotsv1::ViewSnapshotResponse resp;
    grpc::ClientContext ctx;
    grpc::Status status = stub_->View(&ctx, req, &resp);
    if (mounts != nullptr) mounts->assign(resp.mounts().begin(), resp.mounts().end());
    return status;
  }

  grpc::Status Commit(const std::string& name, const std::string& key,
                      const std::map<std::string, std::string>& labels = {},
                      const std::string& parent = "") {
    snapshotsv1::CommitSnapshotRequest req;
    req.set_name(name);
    req.set_key(key);
    req.set_parent(parent);
    for (const auto& [k, v] : labels) (*req.mutable_labels())[k] = v;
    google::protobuf::Empty resp;
    grpc::ClientContext ctx;
    return stub_->Commit(&ctx, req, &resp);
  }

  grpc::Status Stat(const std::string& key, snapshotsv1::Info* info = nullptr) {
    snapshotsv1::StatSnapshotRequest req;
    req.set_key(key);
    snapshotsv1::StatSnapshotResponse resp;
    grpc::ClientContext ctx;
    grpc::Status status = stub_->Stat(&ctx, req, &resp);
    if (info != nullptr) *info = resp.info();
    return status;
  }

  grpc::Status Remove(const std::string& key) {
    snapshotsv1::RemoveSnapshotRequest req;
    req.set_key(key);
    google::protobuf::Empty resp;
    grpc::ClientContext ctx;
    return stub_->Remove(&ctx, req, &resp);
  }

  grpc::Status Update(const snapshotsv1::Info& info, const std::vector<std::string>& paths,
                      snapshotsv1::Info* out = nullptr) {
    snapshotsv1::UpdateSnapshotRequest req;
    *req.mutable_info() = info;
    for (const std::string& p : paths) req.mutable_update_mask()->add_paths(p);
    snapshotsv1::UpdateSnapshotResponse resp;
    grpc::ClientContext ctx;
    grpc::Status status = stub_->Update(&ctx, req, &resp);
    if (out != nullptr) *out = resp.info();
    return status;
  }

  // Lists with `filters`; `batch_sizes` receives the number of Infos in each stream message.
  grpc::Status List(const std::vector<std::string>& filters, std::vector<snapshotsv1::Info>* infos,
                    std::vector<int>* batch_sizes = nullptr) {
    snapshotsv1::ListSnapshotsRequest req;
    for (const std::string& f : filters) req.add_filters(f);
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<snapshotsv1::ListSnapshotsResponse>> reader =
        stub_->List(&ctx, req);
    snapshotsv1::ListSnapshotsResponse resp;
    infos->clear();
    while (reader->Read(&resp)) {
      if (batch_sizes != nullptr) batch_sizes->push_back(resp.info_size());
      infos->insert(infos->end(), resp.info().begin(), resp.info().end());
    }
    return reader->Finish();
  }

  static std::vector<std::string> Names(const std::vector<snapshotsv1::Info>& infos) {
    std::vector<std::string> names;
    for (const auto& info : infos) names.push_back(info.name());
    return names;
  }

  testing::TempDir dir_;
  std::string socket_;
  std::unique_ptr<overlay::Snapshotter> snapshotter_;
  std::unique_ptr<SnapshotsService> service_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<snapshotsv1::Snapshots::Stub> stub_;
};

TEST_F(SnapshotsServiceTest, PrepareCommitViewAndTheirMounts) {
  std::vector<::containerd::types::Mount> mounts;
  ASSERT_TRUE(Prepare("ns/1/base", "", &mounts).ok());
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].type(), "bind");
  EXPECT_EQ(mounts[0].target(), "");
  EXPECT_THAT(mounts[0].options(), ElementsAre("rw", "rbind"));
  const std::string base_fs = mounts[0].source();
  EXPECT_TRUE(base_fs.starts_with(dir_.Sub("root/snapshots/"))) << base_fs;

  ASSERT_TRUE(Commit("ns/2/sha256:base", "ns/1/base", {{"containerd.io/snapshot.ref", "x"}}).ok());
  EXPECT_EQ(Stat("ns/1/base").error_code(), grpc::StatusCode::NOT_FOUND);

  ASSERT_TRUE(Prepare("ns/3/work", "ns/2/sha256:base", &mounts).ok());
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].type(), "overlay");
  EXPECT_EQ(mounts[0].source(), "overlay");
  EXPECT_EQ(mounts[0].target(), "");
  EXPECT_THAT(mounts[0].options(), ::testing::Contains("lowerdir=" + base_fs));

  ASSERT_TRUE(View("ns/4/view", "ns/2/sha256:base", &mounts).ok());
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].type(), "bind");
  EXPECT_EQ(mounts[0].source(), base_fs);
  EXPECT_THAT(mounts[0].options(), ElementsAre("ro", "rbind"));

  snapshotsv1::MountsRequest req;
  req.set_key("ns/3/work");
  snapshotsv1::MountsResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Mounts(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.mounts_size(), 1);
  EXPECT_EQ(resp.mounts(0).type(), "overlay");

  snapshotsv1::Info info;
  ASSERT_TRUE(Stat("ns/2/sha256:base", &info).ok());
  EXPECT_EQ(info.kind(), snapshotsv1::COMMITTED);
  EXPECT_EQ(info.parent(), "");
  EXPECT_EQ(info.labels().at("containerd.io/snapshot.ref"), "x");
  ASSERT_TRUE(Stat("ns/3/work", &info).ok());
  EXPECT_EQ(info.kind(), snapshotsv1::ACTIVE);
  EXPECT_EQ(info.parent(), "ns/2/sha256:base");
  ASSERT_TRUE(Stat("ns/4/view", &info).ok());
  EXPECT_EQ(info.kind(), snapshotsv1::VIEW);
}

TEST_F(SnapshotsServiceTest, TimestampsAreSetExactAndWithinTheCall) {
  const absl::Time before = absl::Now();
  ASSERT_TRUE(Prepare("k", "").ok());
  const absl::Time after = absl::Now();
  snapshotsv1::Info info;
  ASSERT_TRUE(Stat("k", &info).ok());
  ASSERT_TRUE(info.has_created_at());
  ASSERT_TRUE(info.has_updated_at());
  const absl::Time created = TimeFromProto(info.created_at());
  EXPECT_EQ(created, TimeFromProto(info.updated_at()));
  EXPECT_GE(created, before);
  EXPECT_LE(created, after);
  // The stored value crosses the wire unchanged to the nanosecond.
  absl::StatusOr<overlay::Info> direct = snapshotter_->Stat("k");
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(direct->created, created);
}

TEST_F(SnapshotsServiceTest, CommitPassesTheParentField) {
  ASSERT_TRUE(Prepare("a", "").ok());
  ASSERT_TRUE(Commit("base", "a").ok());
  // containerd 2.2 rebase: an Active without parent gets one at Commit (field 5).
  ASSERT_TRUE(Prepare("b", "").ok());
  ASSERT_TRUE(Commit("top", "b", {}, "base").ok());
  snapshotsv1::Info info;
  ASSERT_TRUE(Stat("top", &info).ok());
  EXPECT_EQ(info.parent(), "base");
}

TEST_F(SnapshotsServiceTest, ErrorCodes) {
  ASSERT_TRUE(Prepare("a", "").ok());
  ASSERT_TRUE(Commit("c", "a").ok());
  ASSERT_TRUE(Prepare("child", "c").ok());
  ASSERT_TRUE(View("v", "c").ok());

  EXPECT_EQ(Prepare("child", "c").error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(View("c", "").error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Prepare("x", "missing").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Prepare("x", "child").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Commit("c2", "missing").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Commit("c2", "v").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Prepare("b", "").ok());
  EXPECT_EQ(Commit("c", "b").error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Stat("missing").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Remove("missing").error_code(), grpc::StatusCode::NOT_FOUND);

  const grpc::Status has_children = Remove("c");
  EXPECT_EQ(has_children.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(has_children.error_message(), HasSubstr("remove"));

  snapshotsv1::MountsRequest req;
  req.set_key("missing");
  snapshotsv1::MountsResponse resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->Mounts(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);

  snapshotsv1::UsageRequest ureq;
  ureq.set_key("missing");
  snapshotsv1::UsageResponse uresp;
  grpc::ClientContext uctx;
  EXPECT_EQ(stub_->Usage(&uctx, ureq, &uresp).error_code(), grpc::StatusCode::NOT_FOUND);

  // Children first, then the parent goes.
  ASSERT_TRUE(Remove("child").ok());
  ASSERT_TRUE(Remove("v").ok());
  EXPECT_TRUE(Remove("c").ok());
  EXPECT_EQ(Stat("c").error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SnapshotsServiceTest, UpdateLabelsByMask) {
  ASSERT_TRUE(Prepare("k", "", nullptr, {{"a", "1"}, {"b", "2"}}).ok());
  snapshotsv1::Info before;
  ASSERT_TRUE(Stat("k", &before).ok());

  snapshotsv1::Info req;
  req.set_name("k");
  (*req.mutable_labels())["a"] = "10";
  (*req.mutable_labels())["c"] = "3";
  snapshotsv1::Info out;
  ASSERT_TRUE(Update(req, {"labels.a"}, &out).ok());
  EXPECT_EQ(out.name(), "k");
  EXPECT_EQ(out.kind(), snapshotsv1::ACTIVE);
  EXPECT_THAT(out.labels(),
              UnorderedElementsAre(::testing::Pair("a", "10"), ::testing::Pair("b", "2")));
  EXPECT_EQ(TimeFromProto(out.created_at()), TimeFromProto(before.created_at()));
  EXPECT_GE(TimeFromProto(out.updated_at()), TimeFromProto(before.updated_at()));

  // "labels.b" absent from the request deletes b.
  ASSERT_TRUE(Update(req, {"labels.b"}, &out).ok());
  EXPECT_THAT(out.labels(), UnorderedElementsAre(::testing::Pair("a", "10")));

  // Empty mask replaces the whole map.
  ASSERT_TRUE(Update(req, {}, &out).ok());
  EXPECT_THAT(out.labels(),
              UnorderedElementsAre(::testing::Pair("a", "10"), ::testing::Pair("c", "3")));

  // Immutable fields.
  for (const std::string path : {"parent", "name", "kind"}) {
    EXPECT_EQ(Update(req, {path}).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << path;
  }
  req.set_name("missing");
  EXPECT_EQ(Update(req, {}).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SnapshotsServiceTest, ListOnEmptyStoreSucceeds) {
  std::vector<snapshotsv1::Info> infos;
  std::vector<int> batches;
  grpc::Status status = List({}, &infos, &batches);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(infos.empty());
  EXPECT_TRUE(batches.empty());
}

TEST_F(SnapshotsServiceTest, ListStreamsInBatchesOfHundred) {
  constexpr int kCount = 250;
  for (int i = 0; i < kCount; ++i) {
    const std::string label = i % 2 == 0 ? "even" : "odd";
    ASSERT_TRUE(Prepare(absl::StrCat("k", i), "", nullptr, {{"parity", label}}).ok());
  }
  std::vector<snapshotsv1::Info> infos;
  std::vector<int> batches;
  ASSERT_TRUE(List({}, &infos, &batches).ok());
  EXPECT_EQ(infos.size(), static_cast<size_t>(kCount));
  EXPECT_THAT(batches, ElementsAre(100, 100, 50));
  for (const auto& info : infos) {
    EXPECT_EQ(info.kind(), snapshotsv1::ACTIVE);
    EXPECT_TRUE(info.has_created_at());
    EXPECT_TRUE(info.has_updated_at());
  }

  batches.clear();
  ASSERT_TRUE(List({"labels.parity==odd"}, &infos, &batches).ok());
  EXPECT_EQ(infos.size(), 125u);
  EXPECT_THAT(batches, ElementsAre(100, 25));
}

TEST_F(SnapshotsServiceTest, ListFilters) {
  ASSERT_TRUE(Prepare("a", "", nullptr, {{"containerd.io/snapshot.ref", "sha256:1"}}).ok());
  ASSERT_TRUE(Commit("c", "a", {{"containerd.io/snapshot.ref", "sha256:1"}}).ok());
  ASSERT_TRUE(Prepare("b", "c").ok());
  ASSERT_TRUE(View("v", "c").ok());

  std::vector<snapshotsv1::Info> infos;
  ASSERT_TRUE(List({"kind==committed"}, &infos).ok());
  EXPECT_THAT(Names(infos), ElementsAre("c"));
  ASSERT_TRUE(List({"kind==view", "name==b"}, &infos).ok());
  EXPECT_THAT(Names(infos), UnorderedElementsAre("v", "b"));
  ASSERT_TRUE(List({R"(labels."containerd.io/snapshot.ref"==sha256:1,parent=="")"}, &infos).ok());
  EXPECT_THAT(Names(infos), ElementsAre("c"));
  ASSERT_TRUE(List({"parent==c,kind==active"}, &infos).ok());
  EXPECT_THAT(Names(infos), ElementsAre("b"));

  const grpc::Status bad = List({"kind=="}, &infos);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad.error_message();
  EXPECT_EQ(List({"labels.\"unterminated"}, &infos).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(SnapshotsServiceTest, StatWhileListStreamIsOpen) {
  for (int i = 0; i < 150; ++i) ASSERT_TRUE(Prepare(absl::StrCat("k", i), "").ok());
  snapshotsv1::ListSnapshotsRequest req;
  grpc::ClientContext ctx;
  auto reader = stub_->List(&ctx, req);
  snapshotsv1::ListSnapshotsResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  for (const auto& info : resp.info()) ASSERT_TRUE(Stat(info.name()).ok());
  while (reader->Read(&resp)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(SnapshotsServiceTest, Usage) {
  std::vector<::containerd::types::Mount> mounts;
  ASSERT_TRUE(Prepare("a", "", &mounts).ok());
  {
    std::ofstream out(mounts[0].source() + "/file", std::ios::binary);
    out << std::string(10000, 'x');
  }
  snapshotsv1::UsageRequest req;
  req.set_key("a");
  snapshotsv1::UsageResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Usage(&ctx, req, &resp).ok());
  }
  EXPECT_GE(resp.size(), 10000);
  EXPECT_GE(resp.inodes(), 1);

  ASSERT_TRUE(Commit("c", "a").ok());
  req.set_key("c");
  snapshotsv1::UsageResponse committed;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Usage(&ctx, req, &committed).ok());
  }
  EXPECT_EQ(committed.size(), resp.size());
  EXPECT_EQ(committed.inodes(), resp.inodes());
}

TEST_F(SnapshotsServiceTest, CleanupRemovesUnknownDirectories) {
  ASSERT_TRUE(Prepare("a", "").ok());
  const std::string orphan = dir_.Sub("root/snapshots/987654");
  std::filesystem::create_directories(orphan + "/fs");
  snapshotsv1::CleanupRequest req;
  google::protobuf::Empty resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Cleanup(&ctx, req, &resp).ok());
  EXPECT_FALSE(std::filesystem::exists(orphan));
  EXPECT_TRUE(Stat("a").ok());
}

TEST_F(SnapshotsServiceTest, LargeLabelMessagesFitTheMessageLimit) {
  // Well above gRPC's default 4 MiB receive limit, below the 16 MiB containerd uses.
  std::map<std::string, std::string> labels;
  for (int i = 0; i < 2000; ++i) labels[absl::StrCat("l", i)] = std::string(3000, 'v');
  ASSERT_TRUE(Prepare("big", "", nullptr, labels).ok());
  snapshotsv1::Info info;
  ASSERT_TRUE(Stat("big", &info).ok());
  EXPECT_EQ(info.labels_size(), 2000);
}

}  // namespace
}  // namespace zsnap::plugin
