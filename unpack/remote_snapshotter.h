// RemoteSnapshotter: the remote-snapshotter protocol (containerd-api.md §3) around the
// overlay snapshotter. Everything is forwarded unchanged except a Prepare that carries
// containerd's target label (`containerd.io/snapshot.ref` = the layer's chainID) together
// with the CRI labels naming the image, the layer and the manifest
// (`containerd.io/snapshot/cri.{image-ref,layer-digest,manifest-digest}`). For those:
//
//   1. create Active `key` on `parent` as usual;
//   2. with the target locked (two Prepares for one chainID are serialised): if the target
//      is already committed on the same parent, drop `key` and answer AlreadyExists;
//   3. otherwise have the LayerPuller fetch and unpack the layer (verifying the compressed
//      digest and the diffID from the image config) into `key`'s upper directory;
//   4. Commit `key` as the target with the same labels (containerd adopts it by
//      labels."containerd.io/snapshot.ref" and parent); AlreadyExists there is success;
//   5. answer AlreadyExists, so containerd fetches and applies nothing.
// Any failure in 2-4 is logged, counted, and answered with `key`'s ordinary mounts (its upper
// directory empty), so containerd pulls the layer itself. AlreadyExists is never answered
// otherwise. `rebase` must not be advertised while this runs (containerd 2.2+ parallel unpack
// prepares with an empty parent).
//
// Thread safety: as overlay::Snapshotter.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "overlay/snapshotter.h"
#include "unpack/layer_puller.h"
#include "unpack/pull_report.h"

namespace zsnap::unpack {

inline constexpr char kTargetRefLabel[] = "containerd.io/snapshot.ref";
inline constexpr char kCriImageRefLabel[] = "containerd.io/snapshot/cri.image-ref";
inline constexpr char kCriLayerDigestLabel[] = "containerd.io/snapshot/cri.layer-digest";
inline constexpr char kCriManifestDigestLabel[] = "containerd.io/snapshot/cri.manifest-digest";

// The layer a Prepare asks zsnap to provide: nullopt when the labels do not ask (no target,
// or no CRI image labels); InvalidArgument when they ask but are malformed. `key` is the
// backend key ("<namespace>/<n>/<name>" from containerd's metadata store).
absl::StatusOr<std::optional<LayerRequest>> ParseRemoteRequest(const std::string& key,
                                                               const overlay::Labels& labels);

class RemoteSnapshotter final : public overlay::Snapshotter {
 public:
  // `puller` and `observer` (may be null) must outlive this object.
  RemoteSnapshotter(std::unique_ptr<overlay::Snapshotter> inner, LayerPuller& puller,
                    PullObserver* observer);

  absl::StatusOr<std::vector<overlay::Mount>> Prepare(const std::string& key,
                                                      const std::string& parent,
                                                      const overlay::Labels& labels) override;
  absl::StatusOr<std::vector<overlay::Mount>> View(const std::string& key,
                                                   const std::string& parent,
                                                   const overlay::Labels& labels) override {
    return inner_->View(key, parent, labels);
  }
  absl::StatusOr<std::vector<overlay::Mount>> Mounts(const std::string& key) override {
    return inner_->Mounts(key);
  }
  absl::Status Commit(const std::string& name, const std::string& key,
                      const overlay::Labels& labels, const std::string& parent) override {
    return inner_->Commit(name, key, labels, parent);
  }
  absl::Status CommitMeasuringLater(const std::string& name, const std::string& key,
                                    const overlay::Labels& labels) override {
    return inner_->CommitMeasuringLater(name, key, labels);
  }
  absl::Status Remove(const std::string& key) override { return inner_->Remove(key); }
  absl::StatusOr<overlay::Info> Stat(const std::string& key) override {
    return inner_->Stat(key);
  }
  absl::StatusOr<overlay::Info> Update(const overlay::Info& info,
                                       const std::vector<std::string>& fieldpaths) override {
    return inner_->Update(info, fieldpaths);
  }
  absl::StatusOr<std::vector<overlay::Info>> List(
      const std::vector<std::string>& filters) override {
    return inner_->List(filters);
  }
  absl::StatusOr<overlay::Usage> GetUsage(const std::string& key) override {
    return inner_->GetUsage(key);
  }
  absl::Status Cleanup() override { return inner_->Cleanup(); }
  absl::StatusOr<std::string> UpperDir(const std::string& key) override {
    return inner_->UpperDir(key);
  }
  const std::string& root() const override { return inner_->root(); }

 private:
  // Serialises Prepares of one target; entries live while someone holds or waits.
  class TargetLock {
   public:
    TargetLock(RemoteSnapshotter& owner, const std::string& target);
    ~TargetLock();

   private:
    RemoteSnapshotter& owner_;
    std::string target_;
    absl::Mutex* mu_;
  };
  struct TargetEntry {
    absl::Mutex mu;
    int users = 0;
  };

  absl::StatusOr<std::vector<overlay::Mount>> Fallback(const LayerRequest& request,
                                                       const std::string& key,
                                                       std::string_view reason,
                                                       const absl::Status& status,
                                                       std::vector<overlay::Mount> mounts);

  std::unique_ptr<overlay::Snapshotter> inner_;
  LayerPuller& puller_;
  PullObserver* const observer_;
  absl::Mutex targets_mu_;
  std::map<std::string, std::unique_ptr<TargetEntry>> targets_ ABSL_GUARDED_BY(targets_mu_);
};

}  // namespace zsnap::unpack
