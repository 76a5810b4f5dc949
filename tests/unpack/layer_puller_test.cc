// The LayerPuller on its own, Fill() by Fill(), with an in-memory image source that can fail,
// throw or stall: resolutions that fail are retried and never leave an image stuck, shutdown
// frees every waiter, manifests are bounded, the store is asked once per layer, a stalled
// image does not hold back another, and a caller that gives up is let go at once.
#include "unpack/layer_puller.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <future>

#include "absl/strings/str_cat.h"
#include "fake_image_source.h"
#include "overlay/dir_util.h"
#include "tar_builder.h"

namespace zsnap::unpack {
namespace {

using ::testing::HasSubstr;
using testing::FakeImageSource;
using testing::FakeLayer;
using testing::kGuard;
using testing::RecordingObserver;
using testing::TarBuilder;

struct FillResult {
  absl::Status status;
  std::string reason;
};

class LayerPullerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/zsnap-puller-XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    dir_ = templ;
    options_.staging_dir = dir_ + "/staging";
    options_.max_concurrent_layers = 2;
    options_.max_concurrent_layers_per_image = 2;
    options_.writer_threads = 1;
    ASSERT_TRUE(LayerPuller::ClearStaging(options_.staging_dir).ok());
  }
  void TearDown() override {
    source_.ReleaseAll();
    puller_.reset();
    (void)overlay::RemoveTree(dir_);
  }
  LayerPuller& Puller() {
    if (puller_ == nullptr) puller_ = std::make_unique<LayerPuller>(source_, options_, &observer_);
    return *puller_;
  }

  std::vector<FakeLayer> Layers(const std::string& tag, int n) {
    std::vector<FakeLayer> layers;
    for (int i = 0; i < n; ++i) {
      layers.push_back({TarBuilder().File(absl::StrCat("f", i), absl::StrCat(tag, i)).Finish(),
                        FakeLayer::kPlain});
    }
    return layers;
  }
  LayerRequest Request(const Reference& ref, int i, const std::string& ns = "k8s.io") {
    const auto& img = source_.Get(ref);
    std::vector<std::string> chain = ChainIds(img.diff_ids);
    LayerRequest r;
    r.snapshot_namespace = ns;
    r.image = ref;
    r.layer_digest = img.manifest.layers[i].digest;
    r.chain_id = chain[i];
    r.parent = i == 0 ? "" : chain[i - 1];
    return r;
  }
  // One Prepare's Fill of layer i into a fresh upper directory.
  FillResult Fill(const Reference& ref, int i, const WaitContext& wait = {},
                  const std::string& ns = "k8s.io") {
    std::string upper = absl::StrCat(dir_, "/upper-", ++seq_);
    EXPECT_EQ(::mkdir(upper.c_str(), 0755), 0);
    FillResult r;
    r.status = Puller().Fill(Request(ref, i, ns), upper, present_, &r.reason, wait);
    return r;
  }
  std::future<FillResult> FillAsync(const Reference& ref, int i, const WaitContext& wait = {},
                                    const std::string& ns = "k8s.io") {
    Puller();  // created here, not raced for by the threads
    return std::async(std::launch::async, [=, this] { return Fill(ref, i, wait, ns); });
  }
  // The result of `f`, or a failure (and everything released) when it hangs.
  FillResult Get(std::future<FillResult>& f) {
    if (f.wait_for(absl::ToChronoSeconds(kGuard)) != std::future_status::ready) {
      ADD_FAILURE() << "Fill did not return within " << kGuard;
      source_.ReleaseAll();
    }
    return f.get();
  }

  std::string dir_;
  std::atomic<int> seq_{0};
  LayerPullerOptions options_;
  FakeImageSource source_;
  RecordingObserver observer_;
  std::function<bool(const std::string&)> present_ = [](const std::string&) { return false; };
  std::unique_ptr<LayerPuller> puller_;
};

TEST_F(LayerPullerTest, ResolutionThatThrowsIsAnErrorAndTheNextFillRetries) {
  Reference ref = source_.AddImage("app", Layers("a", 2));
  source_.FailNextResolve(ref.digest, absl::UnknownError("throw"));  // throws
  FillResult first = Fill(ref, 0);
  EXPECT_EQ(first.status.code(), absl::StatusCode::kInternal) << first.status;
  EXPECT_THAT(first.status.message(), HasSubstr("threw"));
  EXPECT_EQ(first.reason, "config");
  // Not stuck "resolving", not remembered: containerd's next Prepare pulls the image.
  std::future<FillResult> second = FillAsync(ref, 0);
  FillResult r = Get(second);
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(source_.Resolves(), 2);
}

TEST_F(LayerPullerTest, RegistryErrorWhileResolvingIsRetriedByTheNextFill) {
  Reference ref = source_.AddImage("app", Layers("a", 2));
  source_.FailNextResolve(ref.digest, absl::UnavailableError("503 from registry"));
  FillResult first = Fill(ref, 0);
  EXPECT_EQ(first.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(first.reason, "registry");
  EXPECT_TRUE(Fill(ref, 0).status.ok());
  EXPECT_EQ(source_.Resolves(), 2);
}

TEST_F(LayerPullerTest, ShutdownReleasesFillsWaitingForAResolution) {
  Reference ref = source_.AddImage("app", Layers("a", 3));
  source_.HoldResolves(true);
  std::future<FillResult> a = FillAsync(ref, 0);
  ASSERT_TRUE(source_.WaitResolving(1));
  std::future<FillResult> b = FillAsync(ref, 1);  // waits for the same resolution
  Puller().Shutdown();
  for (std::future<FillResult>* f : {&a, &b}) {
    FillResult r = Get(*f);
    EXPECT_EQ(r.status.code(), absl::StatusCode::kCancelled) << r.status;
    EXPECT_THAT(r.status.message(), HasSubstr("shutting down"));
    EXPECT_EQ(r.reason, "internal");  // the Prepare falls back
  }
}

TEST_F(LayerPullerTest, ManifestWithTooManyLayersIsRefusedAndRemembered) {
  Reference ref = source_.AddImage("huge", Layers("h", 501));
  FillResult r = Fill(ref, 0);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument) << r.status;
  EXPECT_THAT(r.status.message(), HasSubstr("501 layers"));
  EXPECT_THAT(r.status.message(), HasSubstr("max_layers_per_image = 500"));
  EXPECT_EQ(r.reason, "config");
  // The manifest is pinned by digest: the verdict stands without asking the registry again.
  EXPECT_EQ(Fill(ref, 1).status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(source_.Resolves(), 1);
  EXPECT_EQ(source_.TotalOpens(), 0);
}

TEST_F(LayerPullerTest, TheStoreIsAskedOncePerLayerAndNeverUnderThePullersLock) {
  constexpr int kLayers = 100;
  Reference ref = source_.AddImage("tall", Layers("t", kLayers));
  Reference other = source_.AddImage("other", Layers("o", 1));
  std::atomic<int> asked{0};
  std::atomic<bool> under_lock{false};
  std::vector<std::future<void>> probes;  // outlive the Fill that may hold the lock
  present_ = [&](const std::string&) {
    // A metadata lookup (SQLite) must not hold up every other pull: another thread can use
    // the puller meanwhile (Finish of an unrelated image takes the puller's lock and returns).
    if (asked++ == 0) {
      std::future<void> f = std::async(std::launch::async, [&] {
        puller_->Finish(Request(other, 0), "present", 0, absl::OkStatus());
      });
      if (f.wait_for(absl::ToChronoSeconds(kGuard / 4)) != std::future_status::ready) {
        under_lock = true;
      }
      probes.push_back(std::move(f));
    }
    return false;
  };
  // containerd prepares the layers one after another.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Fill(ref, i).status.ok()) << i;
  EXPECT_FALSE(under_lock.load());
  EXPECT_LE(asked.load(), kLayers - 1);
}

TEST_F(LayerPullerTest, StalledImageDoesNotKeepAnotherImagesLayersFromStarting) {
  // Two workers, "two per image": image A's registry stalls on every blob.
  Reference a = source_.AddImage("a", Layers("a", 3));
  Reference b = source_.AddImage("b", Layers("b", 3));
  source_.HoldRepo("a", true);
  std::future<FillResult> fa = FillAsync(a, 0);
  ASSERT_TRUE(source_.WaitOpens(source_.Get(a).manifest.layers[0].digest, 1));
  std::future<FillResult> fb = std::async(std::launch::async, [&] {
    for (int i = 0; i < 3; ++i) {
      FillResult r = Fill(b, i);
      if (!r.status.ok()) return r;
    }
    return FillResult{};
  });
  FillResult rb = Get(fb);
  EXPECT_TRUE(rb.status.ok()) << rb.status;
  // A never held both workers.
  EXPECT_EQ(source_.Opens(source_.Get(a).manifest.layers[1].digest), 0);
  source_.HoldRepo("a", false);
  EXPECT_TRUE(Get(fa).status.ok());
}

TEST_F(LayerPullerTest, ConcurrentResolutionsAreCapped) {
  options_.max_concurrent_resolves = 2;
  std::vector<Reference> refs;
  for (int i = 0; i < 4; ++i) {
    refs.push_back(source_.AddImage(absl::StrCat("r", i), Layers(absl::StrCat("r", i), 1)));
  }
  source_.HoldResolves(true);
  std::vector<std::future<FillResult>> fills;
  for (const Reference& ref : refs) fills.push_back(FillAsync(ref, 0));
  ASSERT_TRUE(source_.WaitResolving(2));
  source_.HoldResolves(false);
  for (std::future<FillResult>& f : fills) {
    FillResult r = Get(f);
    EXPECT_TRUE(r.status.ok()) << r.status;
  }
  EXPECT_EQ(source_.Resolves(), 4);
  EXPECT_LE(source_.MaxResolving(), 2);
}

TEST_F(LayerPullerTest, CancelledFillReturnsAndTheImagesQueuedLayersAreDropped) {
  Reference a = source_.AddImage("a", Layers("a", 3));
  const auto& layers = source_.Get(a).manifest.layers;
  source_.HoldRepo("a", true);
  std::atomic<bool> cancelled{false};
  WaitContext wait{.cancelled = [&] { return cancelled.load(); }};
  std::future<FillResult> f = FillAsync(a, 0, wait);
  ASSERT_TRUE(source_.WaitOpens(layers[0].digest, 1));
  cancelled = true;  // containerd's Prepare call was cancelled
  FillResult r = Get(f);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kCancelled) << r.status;
  EXPECT_EQ(r.reason, "cancelled");
  // Layers 1 and 2 were queued behind layer 0 (one worker per image); nobody wants them now.
  EXPECT_EQ(observer_.LayersWithOutcome("abandoned"), 2);
  source_.HoldRepo("a", false);
  puller_.reset();  // the running layer 0 finishes; nothing else starts
  EXPECT_EQ(source_.Opens(layers[1].digest), 0);
  EXPECT_EQ(source_.Opens(layers[2].digest), 0);
}

TEST_F(LayerPullerTest, FillWhoseDeadlinePassesReturnsDeadlineExceeded) {
  Reference a = source_.AddImage("a", Layers("a", 1));
  source_.HoldRepo("a", true);
  WaitContext wait;
  wait.deadline = absl::Now() + absl::Milliseconds(20);
  FillResult r = Fill(a, 0, wait);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  EXPECT_EQ(r.reason, "cancelled");
}

TEST_F(LayerPullerTest, AnotherWaiterKeepsTheImagesLayers) {
  Reference a = source_.AddImage("a", Layers("a", 3));
  const auto& layers = source_.Get(a).manifest.layers;
  source_.HoldRepo("a", true);
  std::atomic<bool> cancelled{false};
  std::future<FillResult> gives_up =
      FillAsync(a, 0, WaitContext{.cancelled = [&] { return cancelled.load(); }});
  ASSERT_TRUE(source_.WaitOpens(layers[0].digest, 1));
  std::future<FillResult> stays = FillAsync(a, 2);
  // The second Fill is inside once the puller told it about layer 2's job... which we see
  // only through its result; cancel the first and check nothing was dropped.
  cancelled = true;
  EXPECT_EQ(Get(gives_up).status.code(), absl::StatusCode::kCancelled);
  source_.HoldRepo("a", false);
  FillResult r = Get(stays);
  EXPECT_TRUE(r.status.ok()) << r.status;
}

TEST_F(LayerPullerTest, FillCancelledWhileItsResolutionIsQueuedSkipsIt) {
  options_.max_concurrent_resolves = 1;
  Reference a = source_.AddImage("a", Layers("a", 1));
  Reference b = source_.AddImage("b", Layers("b", 1));
  Reference c = source_.AddImage("c", Layers("c", 1));
  source_.HoldResolves(true);
  std::future<FillResult> fa = FillAsync(a, 0);
  ASSERT_TRUE(source_.WaitResolving(1));
  std::atomic<bool> cancelled{false};
  std::future<FillResult> fb =
      FillAsync(b, 0, WaitContext{.cancelled = [&] { return cancelled.load(); }});
  cancelled = true;
  FillResult rb = Get(fb);
  EXPECT_EQ(rb.status.code(), absl::StatusCode::kCancelled) << rb.status;
  EXPECT_EQ(rb.reason, "cancelled");
  std::future<FillResult> fc = FillAsync(c, 0);
  source_.HoldResolves(false);
  EXPECT_TRUE(Get(fa).status.ok());
  EXPECT_TRUE(Get(fc).status.ok());
  // a and c; b's resolution was queued behind a's and dropped once nobody waited.
  EXPECT_LE(source_.Resolves(), 3);
}

}  // namespace
}  // namespace zsnap::unpack
