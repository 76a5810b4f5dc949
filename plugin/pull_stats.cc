#include "plugin/pull_stats.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "plugin/report_store.h"

namespace zsnap::plugin {
namespace {

absl::Status Broken(const unpack::LayerRecord& r, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("layer ", r.index, " (", r.digest, "): ", what));
}

std::string Bytes(uint64_t n) {
  if (n < 1024) return absl::StrCat(n, "B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n) / 1024;
  int u = 0;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return absl::StrFormat("%.1f%s", v, units[u]);
}

std::string Seconds(double s) { return absl::StrFormat("%.3f", s); }

}  // namespace

absl::Status CheckLayerRecord(const unpack::LayerRecord& r) {
  const unpack::LayerTiming& u = r.unpack;
  const std::pair<const char*, double> times[] = {
      {"queue_wait_s", r.queue_wait_s},
      {"fetch.ttfb_s", r.fetch.ttfb_s},
      {"fetch.duration_s", r.fetch.duration_s},
      {"unpack.total_s", u.total_s},
      {"decode.busy_s", u.decode.busy_s},
      {"extract.busy_s", u.extract.busy_s},
      {"write.busy_s", u.write.busy_s},
      {"verify.busy_s", u.verify.busy_s},
      {"commit_s", r.commit_s},
      {"total_s", r.total_s},
  };
  for (const auto& [name, v] : times) {
    if (!std::isfinite(v) || v < 0) return Broken(r, absl::StrCat(name, " = ", v));
  }
  if (r.fetch.ttfb_s > r.fetch.duration_s + kTimingSlackS) {
    return Broken(r,
                  absl::StrFormat("ttfb %.3fs > fetch %.3fs", r.fetch.ttfb_s, r.fetch.duration_s));
  }
  // Fetch and unpack are one streaming pipeline: the fetch clock starts at the request, the
  // unpack's at about the first byte, and only fetch's last bytes may trail the unpack.
  if (r.outcome == "ok" &&
      r.fetch.duration_s > (u.total_s + r.fetch.ttfb_s) * 1.05 + kTimingSlackS) {
    return Broken(r, absl::StrFormat("fetch %.3fs outlasts the unpack's %.3fs + ttfb %.3fs",
                                     r.fetch.duration_s, u.total_s, r.fetch.ttfb_s));
  }
  const std::pair<const char*, double> stages[] = {
      {"decode", u.decode.busy_s}, {"extract", u.extract.busy_s}, {"verify", u.verify.busy_s}};
  for (const auto& [name, busy] : stages) {
    if (busy > u.total_s + kTimingSlackS) {
      return Broken(r, absl::StrFormat("%s busy %.3fs > unpack %.3fs", name, busy, u.total_s));
    }
  }
  if (u.write.busy_s > u.total_s * std::max(1, u.threads) + kTimingSlackS) {
    return Broken(r, absl::StrFormat("write busy %.3fs > unpack %.3fs x %d threads", u.write.busy_s,
                                     u.total_s, u.threads));
  }
  const double parts = r.queue_wait_s + u.total_s + r.commit_s;
  if (parts > r.total_s + kTimingSlackS) {
    return Broken(r, absl::StrFormat("queue %.3f + unpack %.3f + commit %.3f = %.3fs > total %.3fs",
                                     r.queue_wait_s, u.total_s, r.commit_s, parts, r.total_s));
  }
  if (r.outcome == "ok" && r.fetch.bytes != u.bytes_in) {
    return Broken(r, absl::StrCat("fetched ", r.fetch.bytes, " bytes but unpacked ", u.bytes_in));
  }
  return absl::OkStatus();
}

absl::Status CheckImageRecord(const unpack::ImageRecord& r) {
  if (!std::isfinite(r.wall_s) || r.wall_s < 0) {
    return absl::FailedPreconditionError(absl::StrCat("wall_s = ", r.wall_s));
  }
  int ok = 0;
  uint64_t in = 0, out = 0;
  for (const unpack::LayerRecord& l : r.layers) {
    if (absl::Status s = CheckLayerRecord(l); !s.ok()) return s;
    if (l.total_s > r.wall_s + kTimingSlackS) {
      return Broken(l,
                    absl::StrFormat("total %.3fs > the image's wall %.3fs", l.total_s, r.wall_s));
    }
    if (l.outcome == "ok") ++ok;
    in += l.fetch.bytes;
    out += l.unpack.bytes_out;
  }
  if (ok != r.layers_remote) {
    return absl::FailedPreconditionError(
        absl::StrCat("layers_remote = ", r.layers_remote, " but ", ok, " layers are ok"));
  }
  // layers_total is 0 when the manifest never resolved (the image failed before its layers
  // were known); then every Prepare that asked fell back and there is nothing to bound.
  if (r.layers_total > 0 && r.layers_remote + r.layers_fallback > r.layers_total) {
    return absl::FailedPreconditionError(absl::StrCat("layers_remote ", r.layers_remote,
                                                      " + layers_fallback ", r.layers_fallback,
                                                      " > layers_total ", r.layers_total));
  }
  if (in != r.bytes_in || out != r.bytes_out) {
    return absl::FailedPreconditionError(absl::StrCat("bytes_in/out ", r.bytes_in, "/", r.bytes_out,
                                                      " but the layers sum to ", in, "/", out));
  }
  return absl::OkStatus();
}

PullSummary Summarize(const unpack::ImageRecord& r) {
  PullSummary s;
  for (const unpack::LayerRecord& l : r.layers) {
    s.queue_s += l.queue_wait_s;
    s.ttfb_s += l.fetch.ttfb_s;
    s.fetch_s += l.fetch.duration_s;
    s.decode_s += l.unpack.decode.busy_s;
    s.extract_s += l.unpack.extract.busy_s;
    s.write_s += l.unpack.write.busy_s;
    s.verify_s += l.unpack.verify.busy_s;
    s.commit_s += l.commit_s;
  }
  s.mbps = r.wall_s > 0 ? static_cast<double>(r.bytes_out) / r.wall_s / 1e6 : 0;
  return s;
}

std::string FormatStatsTable(const std::vector<unpack::ImageRecord>& records) {
  std::vector<std::vector<std::string>> rows = {
      {"TIME (UTC)", "IMAGE", "OUTCOME", "LAYERS", "IN", "OUT", "WALL_S", "QUEUE", "TTFB", "FETCH",
       "DECODE", "EXTRACT", "WRITE", "VERIFY", "COMMIT", "MB/S"}};
  for (const unpack::ImageRecord& r : records) {
    const PullSummary s = Summarize(r);
    rows.push_back({
        absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(r.started_unix_ms),
                         absl::UTCTimeZone()),
        r.image.empty() ? "-" : r.image,
        r.outcome.empty() ? "-" : r.outcome,
        absl::StrCat(r.layers_remote, "/", r.layers_total),
        Bytes(r.bytes_in),
        Bytes(r.bytes_out),
        Seconds(r.wall_s),
        Seconds(s.queue_s),
        Seconds(s.ttfb_s),
        Seconds(s.fetch_s),
        Seconds(s.decode_s),
        Seconds(s.extract_s),
        Seconds(s.write_s),
        Seconds(s.verify_s),
        Seconds(s.commit_s),
        absl::StrFormat("%.1f", s.mbps),
    });
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      // Text columns (time, image, outcome) align left, numbers right.
      const bool left = i < 3;
      const std::string pad(width[i] - row[i].size(), ' ');
      if (i > 0) line += "  ";
      line += left ? row[i] + pad : pad + row[i];
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string FormatStatsJson(const std::vector<unpack::ImageRecord>& records) {
  nlohmann::json array = nlohmann::json::array();
  for (const unpack::ImageRecord& r : records) array.push_back(unpack::ToJson(r));
  return array.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

absl::Status PrintStats(const std::string& dir, size_t limit, bool json, std::ostream& out,
                        std::ostream& err) {
  absl::StatusOr<LoadedReports> loaded = ReadReports(dir, limit);
  if (!loaded.ok()) return loaded.status();
  for (const std::string& w : loaded->warnings) err << "zsnap stats: skipping " << w << "\n";
  if (json) {
    out << FormatStatsJson(loaded->records);
  } else if (loaded->records.empty()) {
    out << "no pull reports in " << dir << "\n";
  } else {
    out << FormatStatsTable(loaded->records);
    out << "stage columns are seconds summed over each pull's layers (layers run in parallel);"
           " MB/S is uncompressed bytes per wall second\n";
  }
  return absl::OkStatus();
}

}  // namespace zsnap::plugin
