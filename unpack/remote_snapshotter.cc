#include "unpack/remote_snapshotter.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "overlay/dir_util.h"
#include "spdlog/spdlog.h"
#include "unpack/digest.h"

namespace zsnap::unpack {
namespace {

const std::string* Find(const overlay::Labels& labels, const char* name) {
  auto it = labels.find(name);
  return it == labels.end() || it->second.empty() ? nullptr : &it->second;
}

}  // namespace

absl::StatusOr<std::optional<LayerRequest>> ParseRemoteRequest(const std::string& key,
                                                               const overlay::Labels& labels) {
  const std::string* target = Find(labels, kTargetRefLabel);
  const std::string* image = Find(labels, kCriImageRefLabel);
  const std::string* layer = Find(labels, kCriLayerDigestLabel);
  const std::string* manifest = Find(labels, kCriManifestDigestLabel);
  if (target == nullptr || (image == nullptr && layer == nullptr && manifest == nullptr)) {
    return std::nullopt;
  }
  if (image == nullptr || layer == nullptr || manifest == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target ", *target, ": needs all of ", kCriImageRefLabel, ", ", kCriLayerDigestLabel,
        " and ", kCriManifestDigestLabel));
  }
  LayerRequest r;
  for (const std::string* d : {target, layer, manifest}) {
    if (absl::StatusOr<std::string> ok = ParseDigest(*d); !ok.ok()) return ok.status();
  }
  absl::StatusOr<Reference> ref = ParseReference(*image);
  if (!ref.ok()) return ref.status();
  r.image = *std::move(ref);
  r.image.digest = *manifest;
  r.layer_digest = *layer;
  r.chain_id = *target;
  // containerd's metadata store names backend keys "<namespace>/<id>/<key>".
  size_t slash = key.find('/');
  if (slash != std::string::npos) r.snapshot_namespace = key.substr(0, slash);
  return r;
}

RemoteSnapshotter::RemoteSnapshotter(std::unique_ptr<overlay::Snapshotter> inner,
                                     LayerPuller& puller, PullObserver* observer)
    : inner_(std::move(inner)), puller_(puller), observer_(observer) {}

RemoteSnapshotter::TargetLock::TargetLock(RemoteSnapshotter& owner, const std::string& target)
    : owner_(owner), target_(target) {
  {
    absl::MutexLock lock(&owner_.targets_mu_);
    std::unique_ptr<TargetEntry>& e = owner_.targets_[target_];
    if (e == nullptr) e = std::make_unique<TargetEntry>();
    e->users++;
    mu_ = &e->mu;
  }
  mu_->Lock();
}

RemoteSnapshotter::TargetLock::~TargetLock() {
  mu_->Unlock();
  absl::MutexLock lock(&owner_.targets_mu_);
  auto it = owner_.targets_.find(target_);
  if (--it->second->users == 0) owner_.targets_.erase(it);
}

absl::StatusOr<std::vector<overlay::Mount>> RemoteSnapshotter::Fallback(
    const LayerRequest& request, const std::string& key, std::string_view reason,
    const absl::Status& status, std::vector<overlay::Mount> mounts) {
  spdlog::warn(
      "remote op=fallback key={} target={} image={} layer={} reason={} error=\"{}\" — "
      "containerd will fetch and apply this layer itself",
      key, request.chain_id, request.image.String(), request.layer_digest, reason,
      status.ToString());
  if (observer_ != nullptr) observer_->OnFallback(reason, status.ToString());
  puller_.Finish(request, "fallback", 0, status);
  return mounts;
}

absl::StatusOr<std::vector<overlay::Mount>> RemoteSnapshotter::Prepare(
    const std::string& key, const std::string& parent, const overlay::Labels& labels) {
  absl::StatusOr<std::optional<LayerRequest>> parsed = ParseRemoteRequest(key, labels);
  if (!parsed.ok()) {
    spdlog::warn("remote op=prepare key={} ignoring malformed remote labels: {}", key,
                 parsed.status().ToString());
    if (observer_ != nullptr) observer_->OnFallback("labels", parsed.status().ToString());
    return inner_->Prepare(key, parent, labels);
  }
  if (!parsed->has_value()) return inner_->Prepare(key, parent, labels);
  (*parsed)->parent = parent;
  const LayerRequest& request = **parsed;

  absl::StatusOr<std::vector<overlay::Mount>> mounts = inner_->Prepare(key, parent, labels);
  if (!mounts.ok()) return mounts;

  TargetLock lock(*this, request.chain_id);
  absl::StatusOr<overlay::Info> existing = inner_->Stat(request.chain_id);
  if (existing.ok()) {
    if (existing->kind == overlay::Kind::kCommitted && existing->parent == parent) {
      if (absl::Status s = inner_->Remove(key); !s.ok()) {
        spdlog::warn("remote op=prepare key={} removing unused active: {}", key, s.ToString());
      }
      puller_.Finish(request, "present", 0, absl::OkStatus());
      spdlog::info("remote op=prepare key={} target={} present=true", key, request.chain_id);
      return absl::AlreadyExistsError(
          absl::StrCat("target snapshot \"", request.chain_id, "\": already exists"));
    }
    return Fallback(request, key, "target",
                    absl::FailedPreconditionError(absl::StrCat(
                        "target ", request.chain_id, " exists with parent \"", existing->parent,
                        "\", not \"", parent, "\"")),
                    *std::move(mounts));
  }

  absl::StatusOr<std::string> upper = inner_->UpperDir(key);
  if (!upper.ok()) return Fallback(request, key, "internal", upper.status(), *std::move(mounts));
  auto present = [this](const std::string& chain_id) {
    absl::StatusOr<overlay::Info> info = inner_->Stat(chain_id);
    return info.ok() && info->kind == overlay::Kind::kCommitted;
  };
  std::string reason = "internal";
  if (absl::Status s = puller_.Fill(request, *upper, present, &reason); !s.ok()) {
    return Fallback(request, key, reason, s, *std::move(mounts));
  }

  const absl::Time commit_start = absl::Now();
  // The usage walk (0.2 s for a 1 GB layer) waits for the first Usage call, off the pull.
  absl::Status commit = inner_->CommitMeasuringLater(request.chain_id, key, labels);
  if (absl::IsAlreadyExists(commit)) {
    (void)inner_->Remove(key);
    commit = absl::OkStatus();
  }
  if (!commit.ok()) {
    // Hand containerd an empty upper directory again.
    absl::Status clean = overlay::RemoveTree(*upper);
    if (clean.ok()) clean = overlay::MakeDirWithMode(*upper, 0755);
    if (!clean.ok()) {
      spdlog::error("remote op=prepare key={} cannot empty {} after a failed commit: {}", key,
                    *upper, clean.ToString());
      (void)inner_->Remove(key);
      return commit;
    }
    return Fallback(request, key, "commit", commit, *std::move(mounts));
  }
  const double commit_s = absl::ToDoubleSeconds(absl::Now() - commit_start);
  puller_.Finish(request, "ok", commit_s, absl::OkStatus());
  spdlog::info("remote op=prepare key={} target={} image={} layer={} committed=true", key,
               request.chain_id, request.image.String(), request.layer_digest);
  return absl::AlreadyExistsError(
      absl::StrCat("target snapshot \"", request.chain_id, "\": already exists"));
}

}  // namespace zsnap::unpack
