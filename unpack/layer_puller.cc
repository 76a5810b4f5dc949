#include "unpack/layer_puller.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
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

}  // namespace

LayerPuller::LayerPuller(ImageSource& source, LayerPullerOptions options, PullObserver* observer)
    : source_(source), options_(std::move(options)), observer_(observer) {
  int n = std::max(1, options_.max_concurrent_layers);
  for (int i = 0; i < n; ++i) {
    workers_.emplace_back([this](std::stop_token stop) { WorkerLoop(stop); });
  }
}

void LayerPuller::Shutdown() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  for (auto& [id, job] : jobs_) job->stop.request_stop();
  cv_.SignalAll();
}

LayerPuller::~LayerPuller() {
  std::vector<std::string> leftovers;
  Shutdown();
  for (std::jthread& w : workers_) w.request_stop();
  workers_.clear();  // joins
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

absl::StatusOr<std::shared_ptr<ImageInfo>> LayerPuller::ResolveImage(
    const std::string& key, const LayerRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    std::unique_ptr<Image>& slot = images_[key];
    if (slot == nullptr) {
      slot = std::make_unique<Image>();
      slot->key = key;
      slot->seq = next_seq_++;
      slot->started = absl::Now();
      slot->started_unix_ms = absl::ToUnixMillis(slot->started);
      slot->record.image = request.image.String();
      slot->record.manifest_digest = request.image.digest;
      slot->record.snapshot_namespace = request.snapshot_namespace;
      slot->record.started_unix_ms = slot->started_unix_ms;
    }
    for (;;) {
      auto it = images_.find(key);
      if (it == images_.end()) return absl::AbortedError("image pull ended while resolving");
      Image& image = *it->second;
      image.last_activity = absl::Now();
      if (image.info != nullptr) return image.info;
      if (!image.resolving) {
        image.resolving = true;
        break;
      }
      cv_.Wait(&mu_);
    }
  }
  absl::StatusOr<ImageInfo> info = source_.Resolve(request.image);
  absl::MutexLock lock(&mu_);
  cv_.SignalAll();
  auto it = images_.find(key);
  if (it == images_.end()) return absl::AbortedError("image pull ended while resolving");
  it->second->resolving = false;
  if (!info.ok()) return info.status();
  it->second->info = std::make_shared<ImageInfo>(*std::move(info));
  it->second->record.layers_total = static_cast<int>(it->second->info->manifest.layers.size());
  return it->second->info;
}

absl::Status LayerPuller::Fill(const LayerRequest& request, const std::string& upper_dir,
                               const std::function<bool(const std::string&)>& present,
                               std::string* reason) {
  auto fail = [&](std::string why, absl::Status s) {
    if (reason != nullptr) *reason = std::move(why);
    return s;
  };
  const std::string key = absl::StrCat(request.snapshot_namespace, "/", request.image.digest);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return fail("internal", absl::CancelledError("zsnap is shutting down"));
  }
  absl::StatusOr<std::shared_ptr<ImageInfo>> info = ResolveImage(key, request);
  if (!info.ok()) {
    return fail(IsRegistryError(info.status()) ? "registry" : "config",
                absl::Status(info.status().code(),
                             absl::StrCat("resolving ", request.image.String(), ": ",
                                          info.status().message())));
  }
  const ImageInfo& image_info = **info;
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

  std::shared_ptr<Job> job;
  {
    absl::MutexLock lock(&mu_);
    auto it = images_.find(key);
    if (it == images_.end()) return fail("internal", absl::AbortedError("image pull ended"));
    Image& image = *it->second;
    image.last_activity = absl::Now();
    for (size_t j = index; j < image_info.chain_ids.size(); ++j) {
      const std::string& cid = image_info.chain_ids[j];
      const bool mine = static_cast<int>(j) == index;  // must have a job after this loop
      if (jobs_.contains(cid)) {
        image.pending.insert(cid);
        continue;
      }
      if (!mine && (image.pending.contains(cid) || image.claimed.contains(cid) || present(cid))) {
        continue;
      }
      auto fresh = std::make_shared<Job>();
      fresh->chain_id = cid;
      fresh->image_key = key;
      fresh->image_seq = image.seq;
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
    }
    job = jobs_[request.chain_id];
    job->wanted = true;
    cv_.SignalAll();
    while (!stopping_ && job->state != JobState::kReady && job->state != JobState::kFailed) {
      cv_.Wait(&mu_);
    }
    if (stopping_) return fail("internal", absl::CancelledError("zsnap is shutting down"));
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
  if (!image.pending.empty() || !image.claimed.empty()) return;
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

std::shared_ptr<LayerPuller::Job> LayerPuller::PickJobLocked() {
  std::shared_ptr<Job> best;
  for (auto& [cid, job] : jobs_) {
    if (job->state != JobState::kQueued) continue;
    int image_running = 0;
    for (auto& [other_cid, other] : jobs_) {
      if (other->state == JobState::kRunning && other->image_key == job->image_key) {
        ++image_running;
      }
    }
    if (image_running >= std::max(1, options_.max_concurrent_layers_per_image)) continue;
    if (best == nullptr ||
        std::tuple(!job->wanted, job->image_seq, job->index) <
            std::tuple(!best->wanted, best->image_seq, best->index)) {
      best = job;
    }
  }
  return best;
}

void LayerPuller::WorkerLoop(std::stop_token stop) {
  for (;;) {
    std::shared_ptr<Job> job;
    std::vector<std::string> to_remove;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (stopping_ || stop.stop_requested()) return;
        job = PickJobLocked();
        if (job != nullptr) break;
        cv_.WaitWithTimeout(&mu_, absl::Seconds(5));
        ReapLocked(absl::Now());
      }
      job->state = JobState::kRunning;
      ++running_;
    }
    RunJob(*job);
    {
      absl::MutexLock lock(&mu_);
      --running_;
      job->finished = absl::Now();
      cv_.SignalAll();
    }
  }
}

void LayerPuller::RunJob(Job& job) {
  const absl::Time start = absl::Now();
  LayerRecord& record = job.record;
  record.queue_wait_s = Seconds(start - job.scheduled);
  if (observer_ != nullptr) observer_->OnInFlight(+1);

  absl::Status status;
  std::string reason;
  std::string staging;
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
  absl::MutexLock lock(&mu_);
  job.staging = staging;
  job.status = status;
  job.reason = reason;
  job.state = status.ok() ? JobState::kReady : JobState::kFailed;
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
    bool idle = now - image.last_activity >= options_.unclaimed_ttl && !image.resolving;
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
