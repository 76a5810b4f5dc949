// The remote-snapshotter protocol over a real overlay snapshotter, with an in-memory image
// source: containerd's view (AlreadyExists, adoption by label and parent, fallback mounts),
// the puller's (dedup, whole-image scheduling, staging cleanup) and the observer's records.
#include "unpack/remote_snapshotter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "codec_test_util.h"
#include "fake_image_source.h"
#include "overlay/dir_util.h"
#include "tar_builder.h"
#include "unpack/digest.h"

namespace zsnap::unpack {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::Bytes;
using testing::FakeImageSource;
using testing::FakeLayer;
using testing::RecordingObserver;
using testing::TarBuilder;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class RemoteSnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/zsnap-remote-XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    dir_ = templ;
    Open(absl::Minutes(10));
  }
  void TearDown() override {
    source_.ReleaseAll();
    snap_.reset();
    puller_.reset();
    (void)overlay::RemoveTree(dir_);
  }

  void Open(absl::Duration ttl) {
    snap_.reset();
    puller_.reset();
    overlay::SnapshotterOptions so;
    so.root = dir_ + "/root";
    so.durable = false;
    so.userxattr = overlay::SnapshotterOptions::UserXattr::kOff;
    auto inner = overlay::Snapshotter::Open(so);
    ASSERT_TRUE(inner.ok()) << inner.status();
    staging_ = dir_ + "/root/staging";
    ASSERT_TRUE(LayerPuller::ClearStaging(staging_).ok());
    LayerPullerOptions po;
    po.staging_dir = staging_;
    po.max_concurrent_layers = 2;
    po.max_concurrent_layers_per_image = 2;
    po.unclaimed_ttl = ttl;
    po.writer_threads = 1;
    puller_ = std::make_unique<LayerPuller>(source_, po, &observer_);
    snap_ = std::make_unique<RemoteSnapshotter>(*std::move(inner), *puller_, &observer_);
  }

  overlay::Labels LabelsFor(const Reference& ref, int i) {
    const auto& img = source_.Get(ref);
    std::vector<std::string> chain = ChainIds(img.diff_ids);
    return {{std::string(kTargetRefLabel), chain[i]},
            {std::string(kCriImageRefLabel),
             absl::StrCat(ref.registry, "/", ref.repository, ":", ref.tag)},
            {std::string(kCriLayerDigestLabel), img.manifest.layers[i].digest},
            {std::string(kCriManifestDigestLabel), ref.digest},
            {"containerd.io/snapshot/cri.image-layers", "ignored"}};
  }
  std::string Chain(const Reference& ref, int i) {
    return ChainIds(source_.Get(ref).diff_ids)[i];
  }

  // What containerd's unpacker does for layer i of `ref` in namespace `ns`.
  absl::StatusOr<std::vector<overlay::Mount>> PrepareLayer(const std::string& ns,
                                                           const Reference& ref, int i,
                                                           std::optional<std::string> parent = {}) {
    int n = ++seq_;
    std::string key = absl::StrCat(ns, "/", n, "/extract-", n, " ", Chain(ref, i));
    if (!parent) parent = i == 0 ? "" : Chain(ref, i - 1);
    return snap_->Prepare(key, *parent, LabelsFor(ref, i));
  }

  std::vector<FakeLayer> ThreeLayers(const std::string& tag) {
    return {
        {TarBuilder().Dir("etc").File("etc/base", "base " + tag).Dir("usr").Finish(),
         FakeLayer::kGzip},
        {TarBuilder().Dir("usr").File("usr/lib", "lib").Hardlink("usr/lib2", "usr/lib")
             .Whiteout("etc", "base").Finish(),
         FakeLayer::kZstd},
        {TarBuilder().Dir("app").Opaque("app").File("app/run", "run " + tag, 0755).Finish(),
         FakeLayer::kPlain},
    };
  }

  std::string dir_, staging_;
  std::atomic<int> seq_{0};
  FakeImageSource source_;
  RecordingObserver observer_;
  std::unique_ptr<LayerPuller> puller_;
  std::unique_ptr<RemoteSnapshotter> snap_;
};

TEST(ParseRemoteRequestTest, NeedsTargetAndCriLabels) {
  std::string d = Sha256Digest(Bytes("x"));
  EXPECT_FALSE(ParseRemoteRequest("ns/1/k", {})->has_value());
  EXPECT_FALSE(ParseRemoteRequest("ns/1/k", {{kTargetRefLabel, d}})->has_value());
  EXPECT_FALSE(ParseRemoteRequest("ns/1/k", {{kCriImageRefLabel, "a/b:c"}})->has_value());
  auto partial = ParseRemoteRequest("ns/1/k", {{kTargetRefLabel, d}, {kCriImageRefLabel, "x"}});
  EXPECT_EQ(partial.status().code(), absl::StatusCode::kInvalidArgument);
  auto bad = ParseRemoteRequest("ns/1/k", {{kTargetRefLabel, "sha256:zz"},
                                           {kCriImageRefLabel, "a/b:c"},
                                           {kCriLayerDigestLabel, d},
                                           {kCriManifestDigestLabel, d}});
  EXPECT_FALSE(bad.ok());
  auto good = ParseRemoteRequest("k8s.io/12/extract-1 x", {{kTargetRefLabel, d},
                                                             {kCriImageRefLabel, "a/b:c"},
                                                             {kCriLayerDigestLabel, d},
                                                             {kCriManifestDigestLabel, d}});
  ASSERT_TRUE(good.ok() && good->has_value());
  EXPECT_EQ((*good)->snapshot_namespace, "k8s.io");
  EXPECT_EQ((*good)->image.String(), absl::StrCat("docker.io/a/b:c@", d));
  EXPECT_EQ((*good)->chain_id, d);
}

TEST_F(RemoteSnapshotterTest, WithoutRemoteLabelsItIsPlainOverlay) {
  auto mounts = snap_->Prepare("ns/1/k", "", {{kTargetRefLabel, Chain(source_.AddImage(
                                                                         "a", ThreeLayers("a")),
                                                                     0)}});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_EQ(source_.TotalOpens(), 0);
}

TEST_F(RemoteSnapshotterTest, PullsEveryLayerAndContainerdCanAdoptThem) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  for (int i = 0; i < 3; ++i) {
    auto r = PrepareLayer("k8s.io", ref, i);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists) << i << " " << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(Chain(ref, i)));
    // containerd's adoption query (metadata/snapshot.go createSnapshot).
    auto found = snap_->List({absl::StrCat("labels.\"containerd.io/snapshot.ref\"==", Chain(ref, i),
                                           ",parent==\"", i == 0 ? "" : Chain(ref, i - 1), "\"")});
    ASSERT_TRUE(found.ok()) << found.status();
    ASSERT_EQ(found->size(), 1u) << i;
    EXPECT_EQ((*found)[0].kind, overlay::Kind::kCommitted);
  }
  // Only the committed chain is left: the extract-* actives were committed or dropped.
  auto all = snap_->List({});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
  EXPECT_EQ(ReadFile(*snap_->UpperDir(Chain(ref, 0)) + "/etc/base"), "base a");
  std::string l1 = *snap_->UpperDir(Chain(ref, 1));
  struct stat a, b, wh;
  ASSERT_EQ(lstat((l1 + "/usr/lib").c_str(), &a), 0);
  ASSERT_EQ(lstat((l1 + "/usr/lib2").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  ASSERT_EQ(lstat((l1 + "/etc/base").c_str(), &wh), 0);
  EXPECT_TRUE(S_ISCHR(wh.st_mode));
  std::string l2 = *snap_->UpperDir(Chain(ref, 2));
  EXPECT_EQ(ReadFile(l2 + "/app/run"), "run a");
  struct stat root;
  ASSERT_EQ(stat(l2.c_str(), &root), 0);
  EXPECT_EQ(root.st_mode & 07777, 0755u);
  EXPECT_THAT(puller_->StagingEntries(), IsEmpty());
  // Usage is measured at the first request (not at the commit) and counts the whole layer.
  auto usage = snap_->GetUsage(Chain(ref, 2));
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->inodes, 3);  // the root, app/, app/run
  EXPECT_GT(usage->size, 0);
  EXPECT_EQ(*snap_->GetUsage(Chain(ref, 2)), *usage);

  absl::MutexLock lock(&observer_.mu_);
  ASSERT_EQ(observer_.layers.size(), 3u);
  for (const LayerRecord& l : observer_.layers) {
    EXPECT_EQ(l.outcome, "ok") << l.error;
    EXPECT_GT(l.fetch.bytes, 0u);
    EXPECT_LE(l.unpack.total_s, l.total_s + 1e-6);
  }
  ASSERT_EQ(observer_.images.size(), 1u);
  EXPECT_EQ(observer_.images[0].layers_remote, 3);
  EXPECT_EQ(observer_.images[0].layers_total, 3);
  EXPECT_EQ(observer_.images[0].outcome, "ok");
  EXPECT_EQ(observer_.images[0].snapshot_namespace, "k8s.io");
  EXPECT_EQ(observer_.in_flight.load(), 0);
}

TEST_F(RemoteSnapshotterTest, FirstPrepareStartsTheWholeImage) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  ASSERT_EQ(PrepareLayer("k8s.io", ref, 0).status().code(), absl::StatusCode::kAlreadyExists);
  // Layers 1 and 2 were scheduled with layer 0 and finish without further Prepares.
  const auto& img = source_.Get(ref);
  for (int spin = 0; spin < 500 && puller_->StagingEntries().size() < 2; ++spin) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(source_.Opens(img.manifest.layers[1].digest), 1);
  EXPECT_EQ(source_.Opens(img.manifest.layers[2].digest), 1);
  EXPECT_EQ(puller_->StagingEntries().size(), 2u);
}

TEST_F(RemoteSnapshotterTest, CorruptBlobFallsBackWithEmptyUpperAndNothingStaged) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  const auto& img = source_.Get(ref);
  std::string blob = testing::GzipMember(TarBuilder().File("evil", "x").Finish());
  source_.Corrupt(img.manifest.layers[0].digest, blob);
  auto r = PrepareLayer("k8s.io", ref, 0);
  ASSERT_TRUE(r.ok()) << r.status();  // ordinary mounts: containerd applies the layer itself
  auto actives = snap_->List({"kind==active"});
  ASSERT_EQ(actives->size(), 1u);
  auto names = overlay::ListDir(*snap_->UpperDir((*actives)[0].name));
  EXPECT_THAT(*names, IsEmpty());
  EXPECT_FALSE(snap_->Stat(Chain(ref, 0)).ok());
  {
    absl::MutexLock lock(&observer_.mu_);
    ASSERT_EQ(observer_.fallbacks.size(), 1u);
    EXPECT_EQ(observer_.fallbacks[0].first, "digest");
  }
  // The other layers were fine; once containerd has layer 0 the next Prepare uses them.
  // containerd commits a layer it applied itself under "<namespace>/<n>/<chain ID>".
  const std::string native = absl::StrCat("k8s.io/99/", Chain(ref, 0));
  ASSERT_TRUE(snap_->Commit(native, (*actives)[0].name, {}, "").ok());
  EXPECT_EQ(PrepareLayer("k8s.io", ref, 1, native).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(PrepareLayer("k8s.io", ref, 2).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(snap_->Stat(Chain(ref, 1))->parent, native);
  EXPECT_THAT(puller_->StagingEntries(), IsEmpty());
  absl::MutexLock lock(&observer_.mu_);
  ASSERT_EQ(observer_.images.size(), 1u);
  EXPECT_EQ(observer_.images[0].outcome, "partial");
  EXPECT_EQ(observer_.images[0].layers_fallback, 1);
  EXPECT_EQ(observer_.images[0].layers_remote, 2);
}

TEST_F(RemoteSnapshotterTest, RegistryErrorsFallBackWithTheirReason) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  source_.Fail(source_.Get(ref).manifest.layers[0].digest,
               absl::UnauthenticatedError("401 from registry"));
  auto r = PrepareLayer("k8s.io", ref, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::MutexLock lock(&observer_.mu_);
  ASSERT_EQ(observer_.fallbacks.size(), 1u);
  EXPECT_EQ(observer_.fallbacks[0].first, "registry");
  EXPECT_THAT(observer_.fallbacks[0].second, HasSubstr("401"));
}

TEST_F(RemoteSnapshotterTest, UnknownManifestFallsBack) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  overlay::Labels labels = LabelsFor(ref, 0);
  labels[kCriManifestDigestLabel] = Sha256Digest(Bytes("other"));
  auto r = snap_->Prepare("k8s.io/1/x", "", labels);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(source_.TotalOpens(), 0);
}

TEST_F(RemoteSnapshotterTest, ChainIdThatDoesNotMatchTheConfigFallsBack) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  overlay::Labels labels = LabelsFor(ref, 1);
  auto r = snap_->Prepare("k8s.io/1/x", "", labels);  // layer 1's target, but no parent
  ASSERT_TRUE(r.ok());
  labels[kTargetRefLabel] = Sha256Digest(Bytes("not a chain"));
  ASSERT_TRUE(snap_->Prepare("k8s.io/2/x", "", labels).ok());
  absl::MutexLock lock(&observer_.mu_);
  ASSERT_EQ(observer_.fallbacks.size(), 2u);
  EXPECT_EQ(observer_.fallbacks[1].first, "labels");
}

TEST_F(RemoteSnapshotterTest, OneImageInTwoNamespacesIsFetchedOnce) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  source_.Hold(true);
  std::vector<std::jthread> pulls;
  std::atomic<int> already{0};
  for (const char* ns : {"k8s.io", "other"}) {
    pulls.emplace_back([&, ns] {
      for (int i = 0; i < 3; ++i) {
        if (PrepareLayer(ns, ref, i).status().code() == absl::StatusCode::kAlreadyExists) {
          already++;
        }
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(100));
  source_.Hold(false);
  pulls.clear();
  EXPECT_EQ(already.load(), 6);
  for (const Descriptor& d : source_.Get(ref).manifest.layers) EXPECT_EQ(source_.Opens(d.digest), 1);
  EXPECT_EQ(snap_->List({})->size(), 3u);
  EXPECT_THAT(puller_->StagingEntries(), IsEmpty());
}

TEST_F(RemoteSnapshotterTest, TwoImagesSharingABaseFetchItOnce) {
  std::vector<FakeLayer> a = ThreeLayers("a");
  std::vector<FakeLayer> b = {a[0], a[1],
                              {TarBuilder().File("b-only", "b").Finish(), FakeLayer::kGzip}};
  Reference ra = source_.AddImage("a", a);
  Reference rb = source_.AddImage("b", b);
  source_.Hold(true);
  std::vector<std::jthread> pulls;
  for (Reference* ref : {&ra, &rb}) {
    pulls.emplace_back([&, ref] {
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(PrepareLayer("k8s.io", *ref, i).status().code(),
                  absl::StatusCode::kAlreadyExists);
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(100));
  source_.Hold(false);
  pulls.clear();
  const auto& ma = source_.Get(ra).manifest;
  EXPECT_EQ(source_.Opens(ma.layers[0].digest), 1);
  EXPECT_EQ(source_.Opens(ma.layers[1].digest), 1);
  EXPECT_EQ(snap_->List({})->size(), 4u);
  EXPECT_THAT(puller_->StagingEntries(), IsEmpty());
}

TEST_F(RemoteSnapshotterTest, TargetOnAnotherParentFallsBack) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  // Someone committed layer 0's chain ID on an unrelated parent.
  ASSERT_TRUE(snap_->Prepare("base", "", {}).ok());
  ASSERT_TRUE(snap_->Commit("base-c", "base", {}, "").ok());
  ASSERT_TRUE(snap_->Prepare("x", "base-c", {}).ok());
  ASSERT_TRUE(snap_->Commit(Chain(ref, 0), "x", {}, "").ok());
  auto r = PrepareLayer("k8s.io", ref, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::MutexLock lock(&observer_.mu_);
  ASSERT_EQ(observer_.fallbacks.size(), 1u);
  EXPECT_EQ(observer_.fallbacks[0].first, "target");
}

TEST_F(RemoteSnapshotterTest, UnclaimedLayersAreDroppedAfterTheTtl) {
  Open(absl::Milliseconds(200));
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  ASSERT_EQ(PrepareLayer("k8s.io", ref, 0).status().code(), absl::StatusCode::kAlreadyExists);
  // Nobody asks for layers 1 and 2 (the pull was abandoned).
  for (int spin = 0; spin < 300; ++spin) {
    absl::SleepFor(absl::Milliseconds(20));
    absl::MutexLock lock(&observer_.mu_);
    if (observer_.images.size() == 1) break;
  }
  EXPECT_THAT(puller_->StagingEntries(), IsEmpty());
  absl::MutexLock lock(&observer_.mu_);
  ASSERT_EQ(observer_.images.size(), 1u);
  int abandoned = 0;
  for (const LayerRecord& l : observer_.layers) abandoned += l.outcome == "abandoned";
  EXPECT_EQ(abandoned, 2);
}

TEST_F(RemoteSnapshotterTest, ShutdownReleasesWaitingPreparesWithFallbackMounts) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  source_.Hold(true);  // the fetch never finishes by itself
  absl::StatusOr<std::vector<overlay::Mount>> result = absl::UnknownError("not run");
  std::jthread prepare([&] { result = PrepareLayer("k8s.io", ref, 0); });
  for (int spin = 0; spin < 500 && source_.TotalOpens() == 0; ++spin) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  puller_->Shutdown();
  prepare.join();
  EXPECT_TRUE(result.ok()) << result.status();  // ordinary mounts: containerd does the layer
  {
    absl::MutexLock lock(&observer_.mu_);
    ASSERT_EQ(observer_.fallbacks.size(), 1u);
    EXPECT_THAT(observer_.fallbacks[0].second, HasSubstr("shutting down"));
  }
  // New remote Prepares fall back at once too.
  EXPECT_TRUE(PrepareLayer("other", ref, 0).ok());
  source_.Hold(false);
}

TEST_F(RemoteSnapshotterTest, ShutdownRemovesStagedLayers) {
  Reference ref = source_.AddImage("app", ThreeLayers("a"));
  ASSERT_EQ(PrepareLayer("k8s.io", ref, 0).status().code(), absl::StatusCode::kAlreadyExists);
  for (int spin = 0; spin < 500 && puller_->StagingEntries().size() < 2; ++spin) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  snap_.reset();
  puller_.reset();
  EXPECT_THAT(*overlay::ListDir(staging_), IsEmpty());
}

}  // namespace
}  // namespace zsnap::unpack
