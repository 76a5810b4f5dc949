// LayerPuller: fetches and unpacks the layers of images into staging directories, many at
// once, for the remote snapshotter (remote_snapshotter.h).
//
// On the first Fill() for an image (one containerd namespace + manifest digest) the puller
// resolves the manifest and config (ImageSource) on one of `max_concurrent_resolves` resolver
// threads, refuses manifests with more than `max_layers_per_image` layers, then queues a job
// for that layer and every layer above it that is not already present. Worker threads
// (`max_concurrent_layers`) run the jobs — blob stream -> UnpackLayer into
// <staging>/<chain>-XXXXXX. Each image has its own queues (layers a Fill waits for first, then
// bottom-up); workers take images round-robin, and one image never holds more than
// `max_concurrent_layers_per_image` workers nor all of them (with two or more workers one is
// always left for other images), so a registry trickling bytes for one image cannot keep
// another image's layers from starting. Picking a job is O(1) amortised (plus a map lookup);
// nothing touches the disk or the metadata store under the puller's mutex.
//
// Fill() waits for its layer's job and renames the finished tree onto the snapshot's upper
// directory. Jobs are keyed by chainID, so a layer wanted by two pulls at once (two images
// sharing a base, one image in two namespaces) is fetched and unpacked once. A Fill whose
// caller gives up (WaitContext: the gRPC deadline or cancellation) returns at once; when the
// last Fill of an image gives up that way, the image's queued (not started) jobs are dropped.
//
// A failed resolution wakes every Fill waiting on it with the error and is forgotten, so the
// next Prepare (containerd retries the pull) resolves again; only InvalidArgument — the
// manifest, pinned by digest, is unusable and will stay so — is remembered (bounded).
//
// Nothing is left behind: a failed job removes its staging tree; a finished tree that no
// Fill claims within `unclaimed_ttl` is removed ("abandoned"); the destructor cancels
// running jobs and removes every staging tree; ClearStaging() removes what a crash left.
//
// Thread safety: all methods may be called concurrently. One mutex (mu_) guards all state;
// it is never held across ImageSource calls, disk work or the `present` callback.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "unpack/image_source.h"
#include "unpack/pull_report.h"
#include "unpack/unpack.h"
#include "unpack/wait_context.h"

namespace zsnap::unpack {

struct LayerPullerOptions {
  std::string staging_dir;  // on the snapshots' filesystem (renamed into place); created 0700
  int max_concurrent_layers = 3;            // all images together
  int max_concurrent_layers_per_image = 3;  // one image (namespace + manifest); see above
  int max_concurrent_resolves = 4;          // manifest + config fetches at once
  // containerd has no limit; overlayfs stacks at most ~500 lower directories (docker refuses
  // more than 125-128 layers), so a bigger manifest cannot be mounted anyway.
  int max_layers_per_image = 500;
  absl::Duration unclaimed_ttl = absl::Minutes(10);
  UnpackLimits limits;
  int writer_threads = 0;
  bool userxattr = false;
};

// One layer a Prepare asks for, from containerd's labels.
struct LayerRequest {
  std::string snapshot_namespace;  // containerd namespace, from the backend key
  Reference image;                 // image reference with digest = manifest digest
  std::string layer_digest;        // compressed digest (cri.layer-digest)
  std::string chain_id;            // the target (containerd.io/snapshot.ref)
  // The backend name of the parent snapshot: the chain ID below (raw, as zsnap commits it, or
  // "<namespace>/<n>/<chain ID>" as containerd commits natively applied layers), or empty.
  std::string parent;
};

// Why a Fill failed, as a short stable token for metrics, plus the status.
struct FillError {
  std::string reason;  // "registry", "digest", "unpack", "labels", "config", "internal"
  absl::Status status;
};

class LayerPuller {
 public:
  LayerPuller(ImageSource& source, LayerPullerOptions options, PullObserver* observer);
  ~LayerPuller();
  LayerPuller(const LayerPuller&) = delete;
  LayerPuller& operator=(const LayerPuller&) = delete;

  // Stops taking work: running jobs are cancelled, waiting Fill()s (for a layer or for a
  // resolution) return Cancelled with reason "internal" (so their Prepares fall back at once
  // and the gRPC server can drain), new Fill()s fail. Idempotent; the destructor calls it
  // and then joins the workers and resolvers (a resolver inside ImageSource::Resolve
  // finishes that call first).
  void Shutdown();

  // Removes `staging_dir` and everything in it (left by a previous run), then recreates it.
  static absl::Status ClearStaging(const std::string& staging_dir);

  // Makes sure `request`'s layer (and the layers above it) are being pulled, waits for it
  // and moves its tree onto `upper_dir`, an existing empty directory. `present(chain_id)`
  // says whether a layer is already committed (those are not fetched). On error
  // `upper_dir` is untouched. `present` is called without the puller's lock, at most once
  // per layer of an image. When `wait` says the caller gave up, returns its status
  // (DeadlineExceeded / Cancelled) with reason "cancelled".
  absl::Status Fill(const LayerRequest& request, const std::string& upper_dir,
                    const std::function<bool(const std::string&)>& present,
                    std::string* reason = nullptr, const WaitContext& wait = {});

  // Tells the puller how the Prepare for `request` ended: "ok" (committed; `commit_s` spent
  // committing), "present" (someone else committed it), or "fallback" (handed back to
  // containerd). Completes the layer's and, with its last layer, the image's record.
  void Finish(const LayerRequest& request, std::string_view outcome, double commit_s,
              const absl::Status& status);

  // Directories currently under staging_dir (for tests and leak checks).
  std::vector<std::string> StagingEntries() const;

 private:
  enum class JobState { kQueued, kRunning, kReady, kFailed };
  struct Job {
    std::string chain_id;
    std::string image_key;  // the image entry that scheduled it
    std::string run_for;    // the image whose queue it was taken from (its worker count)
    uint64_t run_for_seq = 0;
    Reference ref;
    Descriptor layer;
    std::string diff_id;
    int index = 0;
    JobState state = JobState::kQueued;
    int waiters = 0;  // Fills waiting for it
    absl::Time scheduled;
    absl::Time finished;
    std::string staging;
    absl::Status status;
    std::string reason;
    LayerRecord record;
    std::stop_source stop;
  };
  // One manifest resolution; Fills of the image wait for `done`. Dropped from its image
  // when it fails, so the next Fill starts a new one.
  struct Resolution {
    bool started = false;
    bool done = false;
    absl::Status status;
    int waiters = 0;
  };
  struct Image {
    std::string key;
    uint64_t seq = 0;  // tells a re-created entry of the same key apart
    Reference ref;  // as the first Fill named it
    std::shared_ptr<const ImageInfo> info;  // null until resolved
    std::shared_ptr<Resolution> resolution;  // in flight, or null
    absl::Time started;
    int64_t started_unix_ms = 0;
    absl::Time last_activity;
    int waiters = 0;  // Fills inside Fill() for this image; the entry lives while > 0
    int running = 0;  // jobs taken from this image's queues and not finished
    bool in_ring = false;
    // Layers [scheduled_from, N) have been looked at (scheduled, or present); N until then.
    size_t scheduled_from = 0;
    // Job queues; entries whose job is no longer kQueued are skipped when popped.
    std::deque<std::shared_ptr<Job>> wanted;  // a Fill of this image waits for them
    std::deque<std::shared_ptr<Job>> queued;  // the rest, bottom-up
    std::set<std::string> pending;  // chain IDs scheduled or awaited, not yet finished
    std::map<std::string, LayerRecord> claimed;  // filled, awaiting Finish
    ImageRecord record;
  };
  class ImageWaiter;

  void WorkerLoop(std::stop_token stop);
  void ResolverLoop(std::stop_token stop);
  absl::StatusOr<ImageInfo> ResolveGuarded(const Reference& ref);
  void PublishResolutionLocked(const std::string& key, Resolution& resolution,
                               absl::StatusOr<ImageInfo> info) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Job> PickJobLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RingLocked(Image& image) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunJob(Job& job, absl::Status& status, std::string& reason, std::string& staging);
  absl::Status WaitLocked(const WaitContext& wait, const std::function<bool()>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The image's manifest, resolving it if needed; `waited_out` when the wait (not the
  // resolution) ended: shutdown or the caller gave up.
  absl::StatusOr<std::shared_ptr<const ImageInfo>> ResolvedLocked(Image& image,
                                                                  const WaitContext& wait,
                                                                  bool& waited_out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A Fill's wait ended without a result: at shutdown (reason "internal": fall back) or
  // because the caller gave up (reason "cancelled"; the image's queued jobs go if it was the
  // last Fill of the image).
  absl::Status GaveUpLocked(ImageWaiter& waiter, absl::Status status, std::string* reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropQueuedLocked(Image& image, std::vector<LayerRecord>& layers_out,
                        std::vector<ImageRecord>& images_out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReapLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteLayerLocked(Image& image, const std::string& chain_id, LayerRecord record,
                           std::vector<LayerRecord>& layers_out,
                           std::vector<ImageRecord>& images_out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(const std::vector<LayerRecord>& layers, const std::vector<ImageRecord>& images);

  ImageSource& source_;
  const LayerPullerOptions options_;
  PullObserver* const observer_;
  const int image_cap_;  // workers one image may hold

  mutable absl::Mutex mu_;
  absl::CondVar work_cv_;     // workers: a job was queued, or stopping
  absl::CondVar resolve_cv_;  // resolvers: a resolution was queued, or stopping
  absl::CondVar done_cv_;     // Fills: a job or a resolution finished, or stopping
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);   // by chain ID
  std::map<std::string, std::unique_ptr<Image>> images_ ABSL_GUARDED_BY(mu_);  // by key
  std::deque<std::string> ring_ ABSL_GUARDED_BY(mu_);  // images with runnable jobs, by key
  std::deque<std::string> resolve_queue_ ABSL_GUARDED_BY(mu_);  // image keys
  // Manifests found unusable (InvalidArgument), by image key; oldest first, bounded.
  std::map<std::string, absl::Status> unusable_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> unusable_order_ ABSL_GUARDED_BY(mu_);
  absl::Time last_reap_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::jthread> workers_;
  std::vector<std::jthread> resolvers_;
};

}  // namespace zsnap::unpack
