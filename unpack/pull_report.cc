#include "unpack/pull_report.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace zsnap::unpack {
namespace {

// Reads field `key` of `j` into `out`; InvalidArgument naming `what`.`key` when absent or of
// the wrong type.
template <typename T>
absl::Status Get(const nlohmann::json& j, const char* what, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end()) return absl::InvalidArgumentError(absl::StrCat(what, ": missing ", key));
  try {
    out = it->get<T>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ".", key, ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status GetStage(const nlohmann::json& j, const char* key, StageTime& s) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("timing: missing ", key));
  }
  if (auto st = Get(*it, key, "busy_s", s.busy_s); !st.ok()) return st;
  return Get(*it, key, "wait_s", s.wait_s);
}

#define ZSNAP_RETURN_IF_ERROR_(expr)          \
  do {                                        \
    if (absl::Status _st = (expr); !_st.ok()) \
      return _st;                             \
  } while (0)

// key=value with the same quoting rule as timing.cc's log lines.
void Kv(std::string& out, std::string_view key, std::string_view value) {
  if (!out.empty()) out.push_back(' ');
  out.append(key);
  out.push_back('=');
  bool plain = !value.empty() && value.find_first_of(" \t\n\"=\\") == std::string_view::npos;
  if (plain) {
    out.append(value);
    return;
  }
  out.push_back('"');
  for (char c : value) {
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

}  // namespace

nlohmann::json ToJson(const FetchTiming& t) {
  return {{"ttfb_s", t.ttfb_s},
          {"duration_s", t.duration_s},
          {"bytes", t.bytes},
          {"retries", t.retries}};
}

nlohmann::json ToJson(const LayerRecord& r) {
  return {{"image", r.image},
          {"manifest_digest", r.manifest_digest},
          {"digest", r.digest},
          {"media_type", r.media_type},
          {"chain_id", r.chain_id},
          {"index", r.index},
          {"queue_wait_s", r.queue_wait_s},
          {"fetch", ToJson(r.fetch)},
          {"unpack", ToJson(r.unpack)},
          {"commit_s", r.commit_s},
          {"total_s", r.total_s},
          {"outcome", r.outcome},
          {"error", r.error}};
}

nlohmann::json ToJson(const ImageRecord& r) {
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerRecord& l : r.layers) layers.push_back(ToJson(l));
  return {{"image", r.image},
          {"manifest_digest", r.manifest_digest},
          {"namespace", r.snapshot_namespace},
          {"started_unix_ms", r.started_unix_ms},
          {"wall_s", r.wall_s},
          {"bytes_in", r.bytes_in},
          {"bytes_out", r.bytes_out},
          {"layers_total", r.layers_total},
          {"layers_remote", r.layers_remote},
          {"layers_fallback", r.layers_fallback},
          {"outcome", r.outcome},
          {"layers", std::move(layers)}};
}

absl::StatusOr<LayerTiming> LayerTimingFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("timing: not an object");
  LayerTiming t;
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "layer", t.layer));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "codec", t.codec));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "digest", t.digest));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "diff_id", t.diff_id));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "bytes_in", t.bytes_in));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "bytes_out", t.bytes_out));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "entries", t.entries));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "file_bytes", t.file_bytes));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "threads", t.threads));
  ZSNAP_RETURN_IF_ERROR_(GetStage(j, "read", t.read));
  ZSNAP_RETURN_IF_ERROR_(GetStage(j, "decode", t.decode));
  ZSNAP_RETURN_IF_ERROR_(GetStage(j, "extract", t.extract));
  ZSNAP_RETURN_IF_ERROR_(GetStage(j, "write", t.write));
  ZSNAP_RETURN_IF_ERROR_(GetStage(j, "verify", t.verify));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "timing", "total_s", t.total_s));
  return t;
}

absl::StatusOr<LayerRecord> LayerRecordFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("layer: not an object");
  LayerRecord r;
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "image", r.image));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "manifest_digest", r.manifest_digest));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "digest", r.digest));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "media_type", r.media_type));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "chain_id", r.chain_id));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "index", r.index));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "queue_wait_s", r.queue_wait_s));
  auto fetch = j.find("fetch");
  if (fetch == j.end() || !fetch->is_object()) {
    return absl::InvalidArgumentError("layer: missing fetch");
  }
  ZSNAP_RETURN_IF_ERROR_(Get(*fetch, "fetch", "ttfb_s", r.fetch.ttfb_s));
  ZSNAP_RETURN_IF_ERROR_(Get(*fetch, "fetch", "duration_s", r.fetch.duration_s));
  ZSNAP_RETURN_IF_ERROR_(Get(*fetch, "fetch", "bytes", r.fetch.bytes));
  ZSNAP_RETURN_IF_ERROR_(Get(*fetch, "fetch", "retries", r.fetch.retries));
  auto unpack = j.find("unpack");
  if (unpack == j.end()) return absl::InvalidArgumentError("layer: missing unpack");
  absl::StatusOr<LayerTiming> t = LayerTimingFromJson(*unpack);
  if (!t.ok()) return t.status();
  r.unpack = *std::move(t);
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "commit_s", r.commit_s));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "total_s", r.total_s));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "outcome", r.outcome));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "layer", "error", r.error));
  return r;
}

absl::StatusOr<ImageRecord> ImageRecordFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("image: not an object");
  ImageRecord r;
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "image", r.image));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "manifest_digest", r.manifest_digest));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "namespace", r.snapshot_namespace));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "started_unix_ms", r.started_unix_ms));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "wall_s", r.wall_s));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "bytes_in", r.bytes_in));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "bytes_out", r.bytes_out));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "layers_total", r.layers_total));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "layers_remote", r.layers_remote));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "layers_fallback", r.layers_fallback));
  ZSNAP_RETURN_IF_ERROR_(Get(j, "image", "outcome", r.outcome));
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) {
    return absl::InvalidArgumentError("image: missing layers");
  }
  for (const nlohmann::json& l : *layers) {
    absl::StatusOr<LayerRecord> lr = LayerRecordFromJson(l);
    if (!lr.ok()) return lr.status();
    r.layers.push_back(*std::move(lr));
  }
  return r;
}

std::string ToLogLine(const LayerRecord& r) {
  std::string out;
  Kv(out, "image", r.image);
  Kv(out, "layer", r.digest);
  Kv(out, "chain_id", r.chain_id);
  Kv(out, "outcome", r.outcome);
  absl::StrAppendFormat(&out,
                        " index=%d codec=%s bytes_in=%d bytes_out=%d entries=%d queue_s=%.3f"
                        " ttfb_s=%.3f fetch_s=%.3f retries=%d decode_s=%.3f extract_s=%.3f"
                        " write_s=%.3f verify_s=%.3f unpack_s=%.3f commit_s=%.3f total_s=%.3f"
                        " mbps=%.1f",
                        r.index, r.unpack.codec.empty() ? "-" : r.unpack.codec, r.fetch.bytes,
                        r.unpack.bytes_out, r.unpack.entries, r.queue_wait_s, r.fetch.ttfb_s,
                        r.fetch.duration_s, r.fetch.retries, r.unpack.decode.busy_s,
                        r.unpack.extract.busy_s, r.unpack.write.busy_s, r.unpack.verify.busy_s,
                        r.unpack.total_s, r.commit_s, r.total_s, r.unpack.ThroughputMBps());
  if (!r.error.empty()) Kv(out, "error", r.error);
  return out;
}

std::string ToLogLine(const ImageRecord& r) {
  std::string out;
  Kv(out, "image", r.image);
  Kv(out, "manifest", r.manifest_digest);
  Kv(out, "outcome", r.outcome);
  absl::StrAppendFormat(&out,
                        " layers=%d remote=%d fallback=%d bytes_in=%d bytes_out=%d wall_s=%.3f"
                        " mbps=%.1f",
                        r.layers_total, r.layers_remote, r.layers_fallback, r.bytes_in,
                        r.bytes_out, r.wall_s, r.wall_s > 0 ? r.bytes_out / r.wall_s / 1e6 : 0);
  return out;
}

}  // namespace zsnap::unpack
