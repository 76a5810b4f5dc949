#include "unpack/layer_puller.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "overlay/dir_util.h"
#include "overlay/status_util.h"
#include "spdlog/spdlog.h"
#include "unpack/posix_status.h"

namespace zsnap::unpack {
namespace {

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

// Counts bytes and times the first and last byte of a blob stream; remembers whether an
// error came from the stream (the registry) rather than from the pipeline.
class TimedSource final : public ByteSource {
 public:
  TimedSource(std::unique_ptr<ByteSource> inner, absl::Time requested)
      : inner_(std::move(inner)), requested_(requested) {}

  absl::StatusOr<size_t> Read(std::span<std::byte> buf) override {
    absl::StatusOr<size_t> n = inner_->Read(buf);
    absl::Time now = absl::Now();
    if (!n.ok()) {
      read_error_ = true;
      return n;
    }
    if (*n > 0 && !first_) {
      first_ = true;
      fetch_.ttfb_s = Seconds(now - requested_);
    }
    fetch_.bytes += *n;
    fetch_.duration_s = Seconds(now - requested_);
    return n;
  }
  int retries() const override { return inner_->retries(); }

  FetchTiming timing() const {
    FetchTiming t = fetch_;
    t.retries = inner_->retries();
    return t;
  }
  bool read_error() const { return read_error_; }

 private:
  std::unique_ptr<ByteSource> inner_;
  absl::Time requested_;
  bool first_ = false;
  bool read_error_ = false;
  FetchTiming fetch_;
};

// A short stable token for a registry-side status.
bool IsRegistryError(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

std::string ShortChain(const std::string& chain_id) {
  size_t colon = chain_id.find(':');
  std::string hex = colon == std::string::npos ? chain_id : chain_id.substr(colon + 1);
  return hex.substr(0, 16);
}

// Unusable manifests remembered (see unusable_).
constexpr size_t kMaxUnusable = 256;
// How often an idle worker looks for unclaimed trees and idle images.
constexpr absl::Duration kReapEvery = absl::Seconds(1);

}  // namespace

LayerPuller::LayerPuller(ImageSource& source, LayerPullerOptions options, PullObserver* observer)
    : source_(source),
      options_(std::move(options)),
      observer_(observer),
      // With two or more workers one image never holds all of them: a stalled registry for
      // one image leaves a worker for every other.
      image_cap_(std::max(1, std::min(options_.max_concurrent_layers_per_image,
                                      options_.max_concurrent_layers > 1
                                          ? options_.max_concurrent_layers - 1
                                          : 1))) {
  const int n = std::max(1, options_.max_concurrent_layers);
  for (int i = 0; i < n; ++i) {
    workers_.emplace_back([this](std::stop_token stop) { WorkerLoop(stop); });
  }
  const int r = std::max(1, options_.max_concurrent_resolves);
  for (int i = 0; i < r; ++i) {
    resolvers_.emplace_back([this](std::stop_token stop) { ResolverLoop(stop); });
  }
}

void LayerPuller::Shutdown() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  for (auto& [id, job] : jobs_) job->stop.request_stop();
  work_cv_.SignalAll();
  resolve_cv_.SignalAll();
  done_cv_.SignalAll();
}

LayerPuller::~LayerPuller() {
  std::vector<std::string> leftovers;
  Shutdown();
  for (std::jthread& w : workers_) w.request_stop();
  for (std::jthread& r : resolvers_) r.request_stop();
  workers_.clear();  // joins
  resolvers_.clear();
  absl::MutexLock lock(&mu_);
  for (auto& [id, job] : jobs_) {
    if (!job->staging.empty()) leftovers.push_back(job->staging);
  }
  jobs_.clear();
  for (const std::string& dir : leftovers) {
    if (absl::Status s = overlay::RemoveTree(dir); !s.ok()) {
      spdlog::warn("remote: removing staging {}: {}", dir, s.ToString());
    }
  }
}

absl::Status LayerPuller::ClearStaging(const std::string& staging_dir) {
  absl::StatusOr<std::vector<std::string>> names = overlay::ListDir(staging_dir);
  if (names.ok()) {
    for (const std::string& name : *names) {
      std::string path = absl::StrCat(staging_dir, "/", name);
      spdlog::info("remote: removing staging leftover {}", path);
      if (absl::Status s = overlay::RemoveTree(path); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (!absl::IsNotFound(names.status())) return names.status();
  return overlay::MakeDirWithMode(staging_dir, 0700);
}

std::vector<std::string> LayerPuller::StagingEntries() const {
  absl::StatusOr<std::vector<std::string>> names = overlay::ListDir(options_.staging_dir);
  return names.ok() ? *names : std::vector<std::string>{};
}

absl::Status LayerPuller::WaitLocked(const WaitContext& wait, const std::function<bool()>& done) {
  for (;;) {
    if (done()) return absl::OkStatus();
    if (stopping_) return absl::CancelledError("zsnap is shutting down");
    if (absl::Status s = wait.Check(); !s.ok()) return s;
    absl::Time until = wait.deadline;
    if (wait.cancelled) until = std::min(until, absl::Now() + WaitContext::kCancelPoll);
    done_cv_.WaitWithDeadline(&mu_, until);
  }
}

// A Fill inside an image: keeps the entry alive, and when the last Fill of an image leaves
// because its caller gave up, drops the image's queued jobs. Constructed and destroyed
// without mu_ held.
class LayerPuller::ImageWaiter {
 public:
  ImageWaiter(LayerPuller& puller, std::string key) : puller_(puller), key_(std::move(key)) {}
  ~ImageWaiter() {
    if (!entered_) return;
    std::vector<LayerRecord> layers;
    std::vector<ImageRecord> images;
    {
      absl::MutexLock lock(&puller_.mu_);
      auto it = puller_.images_.find(key_);
      if (it == puller_.images_.end()) return;  // only at teardown
      Image& image = *it->second;
      image.last_activity = absl::Now();
      if (--image.waiters == 0 && gave_up_) puller_.DropQueuedLocked(image, layers, images);
    }
    puller_.Emit(layers, images);
  }
  void Enter(Image& image) ABSL_EXCLUSIVE_LOCKS_REQUIRED(puller_.mu_) {
    image.waiters++;
    entered_ = true;
  }
  void GaveUp() { gave_up_ = true; }

 private:
  LayerPuller& puller_;
  const std::string key_;
  bool entered_ = false;
  bool gave_up_ = false;
};

absl::StatusOr<ImageInfo> LayerPuller::ResolveGuarded(const Reference& ref) {
  // Nothing thrown by a source (a parser on hostile JSON) may leave the image "resolving".
  try {
    return source_.Resolve(ref);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("resolving threw: ", e.what()));
  } catch (...) {
    return absl::InternalError("resolving threw a non-standard exception");
  }
}

void LayerPuller::ResolverLoop(std::stop_token stop) {
  absl::MutexLock lock(&mu_);
  for (;;) {
    while (!stopping_ && !stop.stop_requested() && resolve_queue_.empty()) {
      resolve_cv_.Wait(&mu_);
    }
    if (stopping_ || stop.stop_requested()) return;
    const std::string key = std::move(resolve_queue_.front());
    resolve_queue_.pop_front();
    auto it = images_.find(key);
    if (it == images_.end() || it->second->resolution == nullptr) continue;
    std::shared_ptr<Resolution> resolution = it->second->resolution;
    if (resolution->started) continue;
    if (resolution->waiters == 0) {  // every Fill gave up before it started
      PublishResolutionLocked(key, *resolution, absl::CancelledError("nobody waits"));
      continue;
    }
    resolution->started = true;
    const Reference ref = it->second->ref;
    mu_.Unlock();
    absl::StatusOr<ImageInfo> info = ResolveGuarded(ref);
    mu_.Lock();
    PublishResolutionLocked(key, *resolution, std::move(info));
  }
}

void LayerPuller::PublishResolutionLocked(const std::string& key, Resolution& resolution,
                                          absl::StatusOr<ImageInfo> info) {
  if (info.ok() && info->manifest.layers.size() > static_cast<size_t>(
                                                      std::max(1, options_.max_layers_per_image))) {
    info = absl::InvalidArgumentError(
        absl::StrCat("manifest has ", info->manifest.layers.size(),
                     " layers, more than remote.max_layers_per_image = ",
                     options_.max_layers_per_image));
  }
  if (info.ok() && (info->chain_ids.size() != info->manifest.layers.size() ||
                    info->diff_ids.size() != info->manifest.layers.size())) {
    info = absl::InternalError("image source returned mismatched layer lists");
  }
  resolution.done = true;
  resolution.status = info.status();
  done_cv_.SignalAll();
  auto it = images_.find(key);
  if (it == images_.end() || it->second->resolution.get() != &resolution) return;
  Image& image = *it->second;
  image.resolution = nullptr;  // a failure is not kept: the next Fill resolves again
  if (!info.ok()) {
    if (absl::IsInvalidArgument(info.status()) && !unusable_.contains(key)) {
      if (unusable_order_.size() >= kMaxUnusable) {
        unusable_.erase(unusable_order_.front());
        unusable_order_.pop_front();
      }
      unusable_[key] = info.status();
      unusable_order_.push_back(key);
    }
    return;
  }
  image.info = std::make_shared<const ImageInfo>(*std::move(info));
  image.scheduled_from = image.info->chain_ids.size();
  image.record.layers_total = static_cast<int>(image.info->manifest.layers.size());
}

absl::StatusOr<std::shared_ptr<const ImageInfo>> LayerPuller::ResolvedLocked(
    Image& image, const WaitContext& wait, bool& waited_out) {
  while (image.info == nullptr) {
    if (image.resolution == nullptr) {
      image.resolution = std::make_shared<Resolution>();
      resolve_queue_.push_back(image.key);
      resolve_cv_.Signal();
    }
    std::shared_ptr<Resolution> resolution = image.resolution;
    resolution->waiters++;
    absl::Status waited = WaitLocked(wait, [&] { return resolution->done; });
    resolution->waiters--;
    if (!waited.ok()) {
      waited_out = true;
      return waited;
    }
    if (!resolution->status.ok()) return resolution->status;
  }
  return image.info;
}

absl::Status LayerPuller::GaveUpLocked(ImageWaiter& waiter, absl::Status status,
                                      std::string* reason) {
  if (stopping_) {  // the Prepare falls back
    if (reason != nullptr) *reason = "internal";
    return status;
  }
  waiter.GaveUp();
  if (reason != nullptr) *reason = "cancelled";
  return status;
}

absl::Status LayerPuller::Fill(const LayerRequest& request, const std::string& upper_dir,
                               const std::function<bool(const std::string&)>& present,
                               std::string* reason, const WaitContext& wait) {
  auto fail = [&](std::string why, absl::Status s) {
    if (reason != nullptr) *reason = std::move(why);
    return s;
  };
  const std::string key = absl::StrCat(request.snapshot_namespace, "/", request.image.digest);
  ImageWaiter waiter(*this, key);
  std::shared_ptr<const ImageInfo> info;
  size_t from = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return fail("internal", absl::CancelledError("zsnap is shutting down"));
    if (auto bad = unusable_.find(key); bad != unusable_.end()) {
      return fail("config", absl::Status(bad->second.code(),
                                         absl::StrCat("resolving ", request.image.String(), ": ",
                                                      bad->second.message())));
    }
    std::unique_ptr<Image>& slot = images_[key];
    if (slot == nullptr) {
      slot = std::make_unique<Image>();
      slot->key = key;
      slot->seq = next_seq_++;
      slot->ref = request.image;
      slot->started = absl::Now();
      slot->started_unix_ms = absl::ToUnixMillis(slot->started);
      slot->record.image = request.image.String();
      slot->record.manifest_digest = request.image.digest;
      slot->record.snapshot_namespace = request.snapshot_namespace;
      slot->record.started_unix_ms = slot->started_unix_ms;
    }
    Image& image = *slot;
    image.last_activity = absl::Now();
    waiter.Enter(image);
    bool waited_out = false;
    absl::StatusOr<std::shared_ptr<const ImageInfo>> resolved =
        ResolvedLocked(image, wait, waited_out);
    if (waited_out) return GaveUpLocked(waiter, resolved.status(), reason);
    if (!resolved.ok()) {
      const absl::Status& s = resolved.status();
      return fail(IsRegistryError(s) ? "registry" : "config",
                  absl::Status(s.code(), absl::StrCat("resolving ", request.image.String(), ": ",
                                                      s.message())));
    }
    info = *std::move(resolved);
    from = image.scheduled_from;
  }
  const ImageInfo& image_info = *info;
  int index = -1;
  for (size_t i = 0; i < image_info.chain_ids.size(); ++i) {
    if (image_info.chain_ids[i] == request.chain_id &&
        image_info.manifest.layers[i].digest == request.layer_digest) {
      index = static_cast<int>(i);
      break;
    }
  }
  if (index < 0) {
    return fail("labels", absl::InvalidArgumentError(absl::StrCat(
                              "layer ", request.layer_digest, " with chain ID ", request.chain_id,
                              " is not in ", request.image.String())));
  }

  const std::string want_parent = index == 0 ? "" : image_info.chain_ids[index - 1];
  if (request.parent != want_parent &&
      !(index > 0 && absl::EndsWith(request.parent, absl::StrCat("/", want_parent)))) {
    return fail("labels", absl::InvalidArgumentError(absl::StrCat(
                              "layer ", request.layer_digest, " (chain ID ", request.chain_id,
                              ") must sit on \"", want_parent, "\", not \"", request.parent,
                              "\"")));
  }

  // Which layers above this one are committed already: asked once per layer and image
  // (layers at `from` and above were looked at by an earlier Fill), without the lock.
  const size_t first = static_cast<size_t>(index);
  std::vector<bool> is_present(from > first ? from - first : 0, false);
  for (size_t j = first + 1; j < from; ++j) is_present[j - first] = present(image_info.chain_ids[j]);

  std::shared_ptr<Job> job;
  {
    absl::MutexLock lock(&mu_);
    auto it = images_.find(key);
    if (it == images_.end()) return fail("internal", absl::AbortedError("image pull ended"));
    Image& image = *it->second;
    image.last_activity = absl::Now();
    // Another Fill may have looked at part of [first, from) meanwhile.
    const size_t end = std::max(first + 1, std::min(from, image.scheduled_from));
    for (size_t j = first; j < end; ++j) {
      const std::string& cid = image_info.chain_ids[j];
      const bool mine = j == first;  // must have a job after this loop
      if (jobs_.contains(cid)) {
        image.pending.insert(cid);
        continue;
      }
      if (!mine && (image.pending.contains(cid) || image.claimed.contains(cid) ||
                    (j - first < is_present.size() && is_present[j - first]))) {
        continue;
      }
      auto fresh = std::make_shared<Job>();
      fresh->chain_id = cid;
      fresh->image_key = key;
      fresh->ref = image_info.ref;
      fresh->layer = image_info.manifest.layers[j];
      fresh->diff_id = image_info.diff_ids[j];
      fresh->index = static_cast<int>(j);
      fresh->scheduled = absl::Now();
      fresh->record.image = image_info.ref.String();
      fresh->record.manifest_digest = image_info.ref.digest;
      fresh->record.digest = fresh->layer.digest;
      fresh->record.media_type = fresh->layer.media_type;
      fresh->record.chain_id = cid;
      fresh->record.index = fresh->index;
      jobs_[cid] = fresh;
      image.pending.insert(cid);
      if (!mine) image.queued.push_back(std::move(fresh));
    }
    image.scheduled_from = std::min(image.scheduled_from, first);
    job = jobs_[request.chain_id];
    job->waiters++;
    if (job->state == JobState::kQueued) image.wanted.push_back(job);
    RingLocked(image);
    absl::Status waited = WaitLocked(
        wait, [&] { return job->state == JobState::kReady || job->state == JobState::kFailed; });
    job->waiters--;
    if (!waited.ok()) return GaveUpLocked(waiter, waited, reason);
    auto jt = jobs_.find(request.chain_id);
    if (jt != jobs_.end() && jt->second == job) jobs_.erase(jt);
    it = images_.find(key);
    if (it != images_.end()) {
      it->second->claimed[request.chain_id] = job->record;
      it->second->pending.insert(request.chain_id);
    }
    if (job->state == JobState::kFailed) return fail(job->reason, job->status);
  }
  if (::rename(job->staging.c_str(), upper_dir.c_str()) != 0) {
    absl::Status s = overlay::ErrnoStatus("rename", job->staging, errno);
    (void)overlay::RemoveTree(job->staging);
    return fail("internal", s);
  }
  return absl::OkStatus();
}

void LayerPuller::DropQueuedLocked(Image& image, std::vector<LayerRecord>& layers_out,
                                   std::vector<ImageRecord>& images_out) {
  std::vector<std::shared_ptr<Job>> dropped;
  for (std::deque<std::shared_ptr<Job>>* q : {&image.wanted, &image.queued}) {
    for (std::shared_ptr<Job>& job : *q) {
      if (job->state != JobState::kQueued || job->waiters > 0) continue;
      auto jt = jobs_.find(job->chain_id);
      if (jt == jobs_.end() || jt->second != job) continue;
      // Another image expecting this layer keeps it.
      bool wanted_elsewhere = false;
      for (const auto& [other_key, other] : images_) {
        if (other.get() != &image && other->pending.contains(job->chain_id)) {
          wanted_elsewhere = true;
          break;
        }
      }
      if (wanted_elsewhere) continue;
      job->state = JobState::kFailed;
      job->status = absl::CancelledError("no Prepare waits for the image any more");
      job->reason = "cancelled";
      jobs_.erase(jt);
      dropped.push_back(job);
    }
    q->clear();
  }
  if (dropped.empty()) return;
  spdlog::info("remote: image {} abandoned by its Prepares, {} queued layers dropped", image.key,
               dropped.size());
  // Looked at again by the next Fill.
  if (image.info != nullptr) image.scheduled_from = image.info->chain_ids.size();
  const std::string key = image.key;
  for (const std::shared_ptr<Job>& job : dropped) {
    LayerRecord record = job->record;
    record.outcome = "abandoned";
    record.error = std::string(job->status.message());
    auto it = images_.find(key);
    if (it == images_.end()) {
      layers_out.push_back(std::move(record));
      continue;
    }
    CompleteLayerLocked(*it->second, job->chain_id, std::move(record), layers_out, images_out);
  }
}

void LayerPuller::Finish(const LayerRequest& request, std::string_view outcome, double commit_s,
                         const absl::Status& status) {
  std::vector<LayerRecord> layers;
  std::vector<ImageRecord> images;
  {
    absl::MutexLock lock(&mu_);
    const std::string key = absl::StrCat(request.snapshot_namespace, "/", request.image.digest);
    auto it = images_.find(key);
    if (it == images_.end()) return;
    Image& image = *it->second;
    LayerRecord record;
    bool ran = false;
    if (auto c = image.claimed.find(request.chain_id); c != image.claimed.end()) {
      record = std::move(c->second);
      image.claimed.erase(c);
      ran = true;
    } else {
      record.image = request.image.String();
      record.manifest_digest = request.image.digest;
      record.digest = request.layer_digest;
      record.chain_id = request.chain_id;
    }
    record.commit_s = commit_s;
    if (ran) record.total_s += commit_s;
    if (outcome == "ok") {
      record.outcome = "ok";
      image.record.layers_remote++;
    } else if (outcome == "present") {
      record.outcome = "present";
    } else {
      image.record.layers_fallback++;
      if (record.outcome != "failed") record.outcome = "fallback";
      if (record.error.empty()) record.error = std::string(status.message());
    }
    if (!ran) {
      // Nothing fetched for it here: count it, but no layer record of its own.
      image.pending.erase(request.chain_id);
      if (image.pending.empty() && image.claimed.empty()) {
        CompleteLayerLocked(image, "", LayerRecord{}, layers, images);
      }
    } else {
      CompleteLayerLocked(image, request.chain_id, std::move(record), layers, images);
    }
  }
  Emit(layers, images);
}

void LayerPuller::CompleteLayerLocked(Image& image, const std::string& chain_id,
                                      LayerRecord record, std::vector<LayerRecord>& layers_out,
                                      std::vector<ImageRecord>& images_out) {
  if (!chain_id.empty()) {
    image.pending.erase(chain_id);
    image.record.bytes_in += record.fetch.bytes;
    image.record.bytes_out += record.unpack.bytes_out;
    image.record.layers.push_back(record);
    layers_out.push_back(std::move(record));
  }
  if (!image.pending.empty() || !image.claimed.empty() || image.waiters > 0) return;
  ImageRecord done = std::move(image.record);
  done.wall_s = Seconds(absl::Now() - image.started);
  if (done.layers_fallback == 0) {
    done.outcome = "ok";
  } else {
    done.outcome = done.layers_remote > 0 ? "partial" : "failed";
  }
  images_out.push_back(std::move(done));
  images_.erase(image.key);  // `image` dangles from here
}

void LayerPuller::Emit(const std::vector<LayerRecord>& layers,
                       const std::vector<ImageRecord>& images) {
  for (const LayerRecord& r : layers) {
    if (observer_ != nullptr) {
      observer_->OnLayer(r);
    } else {
      spdlog::info("remote layer {}", ToLogLine(r));
    }
  }
  for (const ImageRecord& r : images) {
    if (observer_ != nullptr) {
      observer_->OnImage(r);
    } else {
      spdlog::info("remote image {}", ToLogLine(r));
    }
  }
}

void LayerPuller::RingLocked(Image& image) {
  if (image.in_ring || image.running >= image_cap_) return;
  if (image.wanted.empty() && image.queued.empty()) return;
  image.in_ring = true;
  ring_.push_back(image.key);
  work_cv_.Signal();
}

std::shared_ptr<LayerPuller::Job> LayerPuller::PickJobLocked() {
  while (!ring_.empty()) {
    const std::string key = std::move(ring_.front());
    ring_.pop_front();
    auto it = images_.find(key);
    if (it == images_.end()) continue;
    Image& image = *it->second;
    image.in_ring = false;
    std::shared_ptr<Job> job;
    for (std::deque<std::shared_ptr<Job>>* q : {&image.wanted, &image.queued}) {
      while (job == nullptr && !q->empty()) {
        std::shared_ptr<Job> next = std::move(q->front());
        q->pop_front();
        if (next->state == JobState::kQueued) job = std::move(next);
      }
    }
    if (job == nullptr) continue;
    job->state = JobState::kRunning;
    job->run_for = key;
    job->run_for_seq = image.seq;
    image.running++;
    RingLocked(image);  // to the back: the next worker serves the next image
    return job;
  }
  return nullptr;
}

void LayerPuller::WorkerLoop(std::stop_token stop) {
  absl::MutexLock lock(&mu_);
  for (;;) {
    std::shared_ptr<Job> job;
    for (;;) {
      if (stopping_ || stop.stop_requested()) return;
      job = PickJobLocked();
      if (job != nullptr) break;
      work_cv_.WaitWithTimeout(&mu_, absl::Seconds(5));
      if (absl::Now() - last_reap_ >= kReapEvery) {
        last_reap_ = absl::Now();
        ReapLocked(last_reap_);
      }
    }
    absl::Status status;
    std::string reason, staging;
    mu_.Unlock();
    RunJob(*job, status, reason, staging);
    mu_.Lock();
    job->staging = staging;
    job->status = status;
    job->reason = reason;
    job->state = status.ok() ? JobState::kReady : JobState::kFailed;
    job->finished = absl::Now();
    if (auto it = images_.find(job->run_for);
        it != images_.end() && it->second->seq == job->run_for_seq) {
      it->second->running--;
      RingLocked(*it->second);
    }
    done_cv_.SignalAll();
  }
}

void LayerPuller::RunJob(Job& job, absl::Status& status, std::string& reason,
                         std::string& staging) {
  const absl::Time start = absl::Now();
  LayerRecord& record = job.record;
  record.queue_wait_s = Seconds(start - job.scheduled);
  if (observer_ != nullptr) observer_->OnInFlight(+1);

  absl::StatusOr<Codec> codec = CodecForMediaType(job.layer.media_type);
  if (!codec.ok()) {
    status = codec.status();
    reason = "config";
  }
  if (status.ok()) {
    absl::StatusOr<std::string> dir =
        overlay::MakeTempDir(options_.staging_dir, absl::StrCat(ShortChain(job.chain_id), "-"));
    if (dir.ok()) {
      staging = *dir;
      // The tree becomes the snapshot's upper directory as is; containerd makes that 0755
      // (a layer's "./" entry, if any, then sets its own mode).
      if (::chmod(staging.c_str(), 0755) != 0) {
        status = overlay::ErrnoStatus("chmod", staging, errno);
        reason = "internal";
      }
    } else {
      status = dir.status();
      reason = "internal";
    }
  }
  if (status.ok()) {
    const absl::Time requested = absl::Now();
    absl::StatusOr<std::unique_ptr<ByteSource>> blob = source_.OpenBlob(job.ref, job.layer);
    if (!blob.ok()) {
      status = blob.status();
      reason = "registry";
      record.fetch.duration_s = Seconds(absl::Now() - requested);
    } else {
      TimedSource timed(*std::move(blob), requested);
      UnpackOptions uo;
      uo.codec = *codec;
      uo.layer_name = absl::StrCat(job.layer.digest, " of ", job.ref.String());
      uo.expected_digest = job.layer.digest;
      uo.expected_diff_id = job.diff_id;
      uo.limits = options_.limits;
      uo.writer_threads = options_.writer_threads;
      uo.userxattr = options_.userxattr;
      uo.stop = job.stop.get_token();
      absl::StatusOr<LayerTiming> timing = UnpackLayer(timed, staging, uo);
      record.fetch = timed.timing();
      if (timing.ok()) {
        record.unpack = *std::move(timing);
        if (record.fetch.bytes != job.layer.size) {
          status = absl::DataLossError(absl::StrCat("layer ", job.layer.digest, ": read ",
                                                    record.fetch.bytes, " bytes, manifest says ",
                                                    job.layer.size));
          reason = "digest";
        }
      } else {
        status = timing.status();
        if (timed.read_error() && IsRegistryError(status)) {
          reason = "registry";
        } else if (absl::IsDataLoss(status)) {
          reason = "digest";
        } else if (absl::IsCancelled(status)) {
          reason = "cancelled";
        } else {
          reason = timed.read_error() ? "registry" : "unpack";
        }
      }
    }
  }
  if (!status.ok() && !staging.empty()) {
    if (absl::Status s = overlay::RemoveTree(staging); !s.ok()) {
      spdlog::warn("remote: removing staging {}: {}", staging, s.ToString());
    }
    staging.clear();
  }
  record.total_s = Seconds(absl::Now() - job.scheduled);
  if (!status.ok()) {
    record.outcome = "failed";
    record.error = std::string(status.message());
    spdlog::warn("remote: layer {} ({}) of {} failed ({}): {}", job.layer.digest, job.chain_id,
                 job.ref.String(), reason, status.ToString());
  } else {
    spdlog::debug("remote: layer {} of {} staged in {:.3f}s", job.layer.digest, job.ref.String(),
                  record.total_s);
  }
  if (observer_ != nullptr) observer_->OnInFlight(-1);
}

void LayerPuller::ReapLocked(absl::Time now) {
  std::vector<std::string> to_remove;
  std::vector<LayerRecord> layers;
  std::vector<ImageRecord> images;
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    Job& job = *it->second;
    bool done = job.state == JobState::kReady || job.state == JobState::kFailed;
    if (!done || job.finished == absl::Time() || now - job.finished < options_.unclaimed_ttl) {
      ++it;
      continue;
    }
    if (!job.staging.empty()) to_remove.push_back(job.staging);
    LayerRecord record = job.record;
    if (record.outcome != "failed") record.outcome = "abandoned";
    spdlog::info("remote: layer {} ({}) unclaimed for {}, dropped", job.layer.digest,
                 job.chain_id, absl::FormatDuration(options_.unclaimed_ttl));
    for (auto& [key, image] : images_) {
      if (image->pending.contains(job.chain_id)) image->pending.erase(job.chain_id);
    }
    layers.push_back(std::move(record));
    it = jobs_.erase(it);
  }
  // Images nobody has touched for a TTL and with nothing left running end here.
  for (auto it = images_.begin(); it != images_.end();) {
    Image& image = *it->second;
    bool idle = now - image.last_activity >= options_.unclaimed_ttl && image.waiters == 0 &&
                image.resolution == nullptr && image.running == 0;
    bool running = false;
    for (const std::string& cid : image.pending) running = running || jobs_.contains(cid);
    if (idle && !running) {
      ++it;  // CompleteLayerLocked erases `image`
      image.pending.clear();
      image.claimed.clear();
      CompleteLayerLocked(image, "", LayerRecord{}, layers, images);
      continue;
    }
    ++it;
  }
  if (to_remove.empty() && layers.empty() && images.empty()) return;
  mu_.Unlock();
  for (const std::string& dir : to_remove) (void)overlay::RemoveTree(dir);
  Emit(layers, images);
  mu_.Lock();
}

}  // namespace zsnap::unpack
