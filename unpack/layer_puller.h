// LayerPuller: fetches and unpacks the layers of images into staging directories, many at
// once, for the remote snapshotter (remote_snapshotter.h).
//
// On the first Fill() for an image (one containerd namespace + manifest digest) the puller
// resolves the manifest and config (ImageSource), then queues a job for that layer and
// every layer above it that is not already present. Worker threads run the jobs —
// blob stream -> UnpackLayer into <staging>/<chain>-XXXXXX — bounded by a global and a
// per-image limit on concurrent layers, the layer a Fill waits for first, then bottom-up.
// Fill() waits for its layer's job and renames the finished tree onto the snapshot's upper
// directory. Jobs are keyed by chainID, so a layer wanted by two pulls at once (two images
// sharing a base, one image in two namespaces) is fetched and unpacked once.
//
// Nothing is left behind: a failed job removes its staging tree; a finished tree that no
// Fill claims within `unclaimed_ttl` is removed ("abandoned"); the destructor cancels
// running jobs and removes every staging tree; ClearStaging() removes what a crash left.
//
// Thread safety: all methods may be called concurrently.
#pragma once

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

namespace zsnap::unpack {

struct LayerPullerOptions {
  std::string staging_dir;  // on the snapshots' filesystem (renamed into place); created 0700
  int max_concurrent_layers = 3;            // all images together
  int max_concurrent_layers_per_image = 3;  // one image (namespace + manifest)
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

  // Stops taking work: running jobs are cancelled, waiting Fill()s return Cancelled (so their
  // Prepares fall back at once and the gRPC server can drain), new Fill()s fail. Idempotent;
  // the destructor calls it.
  void Shutdown();

  // Removes `staging_dir` and everything in it (left by a previous run), then recreates it.
  static absl::Status ClearStaging(const std::string& staging_dir);

  // Makes sure `request`'s layer (and the layers above it) are being pulled, waits for it
  // and moves its tree onto `upper_dir`, an existing empty directory. `present(chain_id)`
  // says whether a layer is already committed (those are not fetched). On error
  // `upper_dir` is untouched.
  absl::Status Fill(const LayerRequest& request, const std::string& upper_dir,
                    const std::function<bool(const std::string&)>& present,
                    std::string* reason = nullptr);

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
    std::string image_key;  // the image entry that scheduled it (per-image limit)
    uint64_t image_seq = 0;
    Reference ref;
    Descriptor layer;
    std::string diff_id;
    int index = 0;
    JobState state = JobState::kQueued;
    bool wanted = false;  // a Fill waits for it: run first
    absl::Time scheduled;
    absl::Time finished;
    std::string staging;
    absl::Status status;
    std::string reason;
    LayerRecord record;
    std::stop_source stop;
  };
  struct Image {
    std::string key;
    uint64_t seq = 0;
    std::shared_ptr<ImageInfo> info;  // null until resolved
    absl::Status resolve_status;
    bool resolving = false;
    absl::Time started;
    int64_t started_unix_ms = 0;
    absl::Time last_activity;
    int running = 0;
    std::set<std::string> pending;  // chain IDs scheduled or awaited, not yet finished
    std::map<std::string, LayerRecord> claimed;  // filled, awaiting Finish
    ImageRecord record;
  };

  void WorkerLoop(std::stop_token stop);
  std::shared_ptr<Job> PickJobLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunJob(Job& job);
  void ReapLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteLayerLocked(Image& image, const std::string& chain_id, LayerRecord record,
                           std::vector<LayerRecord>& layers_out,
                           std::vector<ImageRecord>& images_out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(const std::vector<LayerRecord>& layers, const std::vector<ImageRecord>& images);
  absl::StatusOr<std::shared_ptr<ImageInfo>> ResolveImage(const std::string& key,
                                                          const LayerRequest& request);

  ImageSource& source_;
  const LayerPullerOptions options_;
  PullObserver* const observer_;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);   // by chain ID
  std::map<std::string, std::unique_ptr<Image>> images_ ABSL_GUARDED_BY(mu_);  // by key
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::jthread> workers_;
};

}  // namespace zsnap::unpack
