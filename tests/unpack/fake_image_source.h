// Test doubles for the remote path: an in-memory ImageSource with fault and stall injection
// (failed or throwing resolutions, held resolutions, blobs held per repository, corrupt
// blobs), latches to wait for "N fetches/resolutions have started" without sleeping, and a
// PullObserver that records what it is told.
#pragma once

#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "codec_test_util.h"
#include "nlohmann/json.hpp"
#include "unpack/digest.h"
#include "unpack/image_source.h"
#include "unpack/pull_report.h"

namespace zsnap::unpack::testing {

// Generous guard for waits in tests: only a hang hits it.
inline constexpr absl::Duration kGuard = absl::Seconds(60);

// absl::Condition over a lambda (this absl takes function pointers with an argument).
template <typename F>
absl::Condition When(F* f) {
  return absl::Condition(+[](F* g) { return (*g)(); }, f);
}

inline std::span<const std::byte> Bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

class StringByteSource : public ByteSource {
 public:
  explicit StringByteSource(std::string data) : data_(std::move(data)) {}
  absl::StatusOr<size_t> Read(std::span<std::byte> buf) override {
    size_t n = std::min(buf.size(), data_.size() - pos_);
    std::memcpy(buf.data(), data_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

struct FakeLayer {
  std::string tar;
  enum { kGzip, kZstd, kPlain } codec = kGzip;
};

class FakeImageSource : public ImageSource {
 public:
  struct Image {
    Manifest manifest;
    std::string config;
    std::vector<std::string> diff_ids;
  };

  // Registers an image; returns its reference pinned by manifest digest.
  Reference AddImage(const std::string& repo, const std::vector<FakeLayer>& layers) {
    Image img;
    nlohmann::json config = {{"architecture", "amd64"}, {"os", "linux"}};
    config["rootfs"] = {{"type", "layers"}, {"diff_ids", nlohmann::json::array()}};
    std::string manifest_text = repo;
    for (const FakeLayer& l : layers) {
      std::string blob, media;
      switch (l.codec) {
        case FakeLayer::kGzip:
          blob = GzipMember(l.tar);
          media = "application/vnd.oci.image.layer.v1.tar+gzip";
          break;
        case FakeLayer::kZstd:
          blob = ZstdFrame(l.tar);
          media = "application/vnd.oci.image.layer.v1.tar+zstd";
          break;
        case FakeLayer::kPlain:
          blob = l.tar;
          media = "application/vnd.oci.image.layer.v1.tar";
          break;
      }
      Descriptor d;
      d.media_type = media;
      d.digest = Sha256Digest(Bytes(blob));
      d.size = blob.size();
      absl::MutexLock lock(&mu_);
      blobs_[d.digest] = blob;
      img.manifest.layers.push_back(d);
      std::string diff_id = Sha256Digest(Bytes(l.tar));
      config["rootfs"]["diff_ids"].push_back(diff_id);
      img.diff_ids.push_back(diff_id);
      manifest_text += d.digest;
    }
    img.config = config.dump();
    img.manifest.config.media_type = "application/vnd.oci.image.config.v1+json";
    img.manifest.config.digest = Sha256Digest(Bytes(img.config));
    img.manifest.config.size = img.config.size();
    img.manifest.media_type = "application/vnd.oci.image.manifest.v1+json";
    img.manifest.bytes = manifest_text;
    img.manifest.digest = Sha256Digest(Bytes(manifest_text));
    Reference ref{.registry = "127.0.0.1:5000", .repository = repo, .tag = "v1",
                  .digest = img.manifest.digest};
    absl::MutexLock lock(&mu_);
    images_[ref.digest] = img;
    return ref;
  }

  absl::StatusOr<ImageInfo> Resolve(const Reference& ref) override {
    absl::MutexLock lock(&mu_);
    resolves_++;
    resolving_++;
    max_resolving_ = std::max(max_resolving_, resolving_);
    mu_.Await(absl::Condition(+[](bool* held) { return !*held; }, &hold_resolves_));
    resolving_--;
    if (auto f = resolve_faults_.find(ref.digest); f != resolve_faults_.end() && !f->second.empty()) {
      absl::Status fault = f->second.front();
      f->second.pop_front();
      // Stands for a JSON library throwing on a hostile document ("mediaType": null).
      if (fault.code() == absl::StatusCode::kUnknown) throw std::runtime_error("type_error");
      return fault;
    }
    auto it = images_.find(ref.digest);
    if (it == images_.end()) return absl::NotFoundError(absl::StrCat("manifest ", ref.digest));
    return MakeImageInfo(ref, it->second.manifest, it->second.config);
  }

  absl::StatusOr<std::unique_ptr<ByteSource>> OpenBlob(const Reference& ref,
                                                       const Descriptor& layer) override {
    absl::MutexLock lock(&mu_);
    opens_[layer.digest]++;
    const std::string repo = ref.repository;
    auto released = [this, &repo]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return !hold_ && !held_repos_.contains(repo);
    };
    mu_.Await(When(&released));
    if (auto f = failures_.find(layer.digest); f != failures_.end()) return f->second;
    auto it = blobs_.find(layer.digest);
    if (it == blobs_.end()) return absl::NotFoundError(absl::StrCat("blob ", layer.digest));
    std::string data = it->second;
    if (auto c = corrupt_.find(layer.digest); c != corrupt_.end()) data = c->second;
    return std::make_unique<StringByteSource>(std::move(data));
  }

  void Fail(const std::string& digest, absl::Status s) {
    absl::MutexLock lock(&mu_);
    failures_[digest] = std::move(s);
  }
  // The next Resolve of `manifest_digest` returns `s`; kUnknown makes it throw instead.
  void FailNextResolve(const std::string& manifest_digest, absl::Status s) {
    absl::MutexLock lock(&mu_);
    resolve_faults_[manifest_digest].push_back(std::move(s));
  }
  void Corrupt(const std::string& digest, std::string bytes) {
    absl::MutexLock lock(&mu_);
    corrupt_[digest] = std::move(bytes);
  }
  // Blob opens (of every image, or of one repository) block until released.
  void Hold(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_ = hold;
  }
  void HoldRepo(const std::string& repo, bool hold) {
    absl::MutexLock lock(&mu_);
    if (hold) {
      held_repos_.insert(repo);
    } else {
      held_repos_.erase(repo);
    }
  }
  void HoldResolves(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_resolves_ = hold;
  }
  void ReleaseAll() {
    absl::MutexLock lock(&mu_);
    hold_ = false;
    hold_resolves_ = false;
    held_repos_.clear();
  }
  // Latches: true once `digest` was opened `n` times / `n` resolutions are inside Resolve.
  bool WaitOpens(const std::string& digest, int n) {
    absl::MutexLock lock(&mu_);
    auto opened = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return opens_[digest] >= n; };
    return mu_.AwaitWithTimeout(When(&opened), kGuard);
  }
  bool WaitResolving(int n) {
    absl::MutexLock lock(&mu_);
    auto inside = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return resolving_ >= n; };
    return mu_.AwaitWithTimeout(When(&inside), kGuard);
  }
  int Opens(const std::string& digest) {
    absl::MutexLock lock(&mu_);
    return opens_[digest];
  }
  int TotalOpens() {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (auto& [d, c] : opens_) n += c;
    return n;
  }
  int Resolves() {
    absl::MutexLock lock(&mu_);
    return resolves_;
  }
  int MaxResolving() {
    absl::MutexLock lock(&mu_);
    return max_resolving_;
  }
  const Image& Get(const Reference& ref) {
    absl::MutexLock lock(&mu_);
    return images_.at(ref.digest);
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Image> images_;
  std::map<std::string, std::string> blobs_;
  std::map<std::string, absl::Status> failures_;
  std::map<std::string, std::deque<absl::Status>> resolve_faults_;
  std::map<std::string, std::string> corrupt_;
  std::map<std::string, int> opens_;
  std::set<std::string> held_repos_;
  int resolves_ = 0;
  int resolving_ = 0;
  int max_resolving_ = 0;
  bool hold_ = false;
  bool hold_resolves_ = false;
};

class RecordingObserver : public PullObserver {
 public:
  void OnLayer(const LayerRecord& r) override {
    absl::MutexLock lock(&mu_);
    layers.push_back(r);
  }
  void OnImage(const ImageRecord& r) override {
    absl::MutexLock lock(&mu_);
    images.push_back(r);
  }
  void OnFallback(std::string_view reason, std::string_view detail) override {
    absl::MutexLock lock(&mu_);
    fallbacks.emplace_back(reason, detail);
  }
  void OnInFlight(int delta) override { in_flight += delta; }

  int LayersWithOutcome(std::string_view outcome) {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const LayerRecord& l : layers) n += l.outcome == outcome;
    return n;
  }

  absl::Mutex mu_;
  std::vector<LayerRecord> layers;
  std::vector<ImageRecord> images;
  std::vector<std::pair<std::string, std::string>> fallbacks;
  std::atomic<int> in_flight{0};
};

}  // namespace zsnap::unpack::testing
