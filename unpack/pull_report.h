// Timing records of the remote path (one per layer zsnap fetched and unpacked, one per image
// pull) and the observer interface through which the daemon turns them into logs, metrics
// and the report history. Plain values; JSON both ways for the history and `zsnap stats`.
//
// Times are seconds (double); bytes are exact counts. Within a LayerRecord the stages add up
// within the layer's wall time: queue_wait_s + total_s covers scheduled -> committed, and
// fetch runs concurrently with decode/extract (they are one streaming pipeline) and its clock
// starts at the request, so fetch.duration_s <= fetch.ttfb_s + unpack.total_s (+ a small tail).
//
// Thread safety: PullObserver methods are called from the puller's worker threads,
// concurrently; implementations synchronise themselves and must not block for long.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "unpack/timing.h"

namespace zsnap::unpack {

struct FetchTiming {
  double ttfb_s = 0;      // request sent -> first body byte (first attempt that succeeded)
  double duration_s = 0;  // first request -> last body byte
  uint64_t bytes = 0;     // compressed bytes received (== the descriptor's size on success)
  int retries = 0;        // resumed or re-sent requests
};

struct LayerRecord {
  std::string image;            // reference, e.g. "127.0.0.1:5000/app:v1"
  std::string manifest_digest;  // "sha256:..."
  std::string digest;           // compressed layer digest
  std::string media_type;
  std::string chain_id;  // the snapshot it was committed as
  int index = 0;         // position in the manifest, 0 = base
  double queue_wait_s = 0;  // scheduled -> a worker slot started it
  FetchTiming fetch;
  LayerTiming unpack;    // decode / extract / write / verify stages, bytes, entries, threads
  double commit_s = 0;   // moving the staged tree into the snapshot and committing it
  double total_s = 0;    // scheduled -> committed (or failed)
  std::string outcome;   // "ok" | "failed" | "abandoned"
  std::string error;     // the reason when not ok
};

struct ImageRecord {
  std::string image;
  std::string manifest_digest;
  std::string snapshot_namespace;  // containerd namespace of the first Prepare, if known
  int64_t started_unix_ms = 0;     // first Prepare of the image
  double wall_s = 0;               // first Prepare -> last layer committed
  uint64_t bytes_in = 0;           // compressed, all layers zsnap handled
  uint64_t bytes_out = 0;          // uncompressed tar bytes
  int layers_total = 0;            // layers in the manifest; 0 if it never resolved
  int layers_remote = 0;           // layers zsnap fetched and committed
  int layers_fallback = 0;         // layers handed back to containerd
  std::string outcome;             // "ok" | "partial" (some fallbacks) | "failed"
  std::vector<LayerRecord> layers;
};

nlohmann::json ToJson(const FetchTiming& t);
nlohmann::json ToJson(const LayerRecord& r);
nlohmann::json ToJson(const ImageRecord& r);
// InvalidArgument naming the missing or mistyped field.
absl::StatusOr<LayerTiming> LayerTimingFromJson(const nlohmann::json& j);
absl::StatusOr<LayerRecord> LayerRecordFromJson(const nlohmann::json& j);
absl::StatusOr<ImageRecord> ImageRecordFromJson(const nlohmann::json& j);

// One structured log line each ("image=... layer=... fetch_s=... ...").
std::string ToLogLine(const LayerRecord& r);
std::string ToLogLine(const ImageRecord& r);

class PullObserver {
 public:
  virtual ~PullObserver() = default;
  // A layer finished (committed, failed, or abandoned because nobody claimed it).
  virtual void OnLayer(const LayerRecord& record) = 0;
  // Every layer of an image pull has been claimed or failed.
  virtual void OnImage(const ImageRecord& record) = 0;
  // A Prepare with target labels was handed back to containerd (ordinary mounts); `reason` is
  // a short stable token ("registry", "digest", "unpack", "labels", "config", "commit",
  // "internal"), `detail` the full message.
  virtual void OnFallback(std::string_view reason, std::string_view detail) = 0;
  // Layers currently fetching/unpacking (+1 when a worker starts one, -1 when it ends).
  virtual void OnInFlight(int delta) = 0;
};

}  // namespace zsnap::unpack
