// The numbers of `zsnap bench`: the per-run records the driver script (bench/cold_start.sh)
// appends to runs.jsonl, their summary per image x codec x mode (median, min-max over reps),
// the zsnap/native ratios, zsnap's per-stage breakdown read from its "remote layer" log
// lines, and their renderings as a text table, CSV and JSON. The SVG chart is bench_chart.h.
//
// Everything here is a pure function of its arguments (no I/O, no clocks); thread-compatible.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace zsnap::plugin {

// One cold start: a fresh filesystem and daemons, a CRI pull, a container up to its ready line.
struct BenchRun {
  std::string image;  // e.g. "python"
  std::string codec;  // "gzip" | "zstd" | "zstd19" (any name: the report does not interpret it)
  std::string mode;   // "native" (containerd's overlayfs) | "zsnap"
  int rep = 0;        // 1-based
  bool ok = false;
  std::string error;   // why, when !ok
  double pull_s = 0;   // PullImage call
  double ready_s = 0;  // pull start -> the container printed its ready line
  double start_s = 0;  // pull end -> ready line (container create + start + the app's own I/O)
  double cpu_s = 0;    // CPU seconds of the daemons (containerd + its children, zsnap); 0 = unknown
  std::string zsnap_log;  // zsnap's log of this run, relative to the results dir ("" if native)
};

// Parses runs.jsonl (one JSON object per line; blank lines skipped). InvalidArgument naming
// the line for malformed input or a missing field.
absl::StatusOr<std::vector<BenchRun>> ParseRuns(absl::string_view jsonl);

// Median (mean of the middle two for an even count), min and max of a non-empty sample.
struct Spread {
  double median = 0;
  double min = 0;
  double max = 0;
  int n = 0;
};
std::optional<Spread> Summarize(std::vector<double> values);

// zsnap's timing of one image pull, from its log: the image's wall time and, for the layer that
// finished last (the one the pull waited for), its stages. Busy seconds of each stage.
struct StageTimes {
  double image_wall_s = 0;  // "remote image ... wall_s"
  int layers = 0;
  int fallbacks = 0;    // layers containerd had to do itself
  double bytes_in = 0;  // all layers
  double bytes_out = 0;
  // The slowest layer ("remote layer ... total_s" largest):
  std::string slowest_layer;
  double ttfb_s = 0, fetch_s = 0, decode_s = 0, write_s = 0, verify_s = 0, unpack_s = 0,
         commit_s = 0, total_s = 0;
  double slowest_bytes_out = 0;
};
// "key=value key2=value2": values end at a space; a value starting with '"' ends at the next
// unescaped '"'. Unparseable tokens are skipped.
std::map<std::string, std::string> ParseKeyValues(absl::string_view line);
// Reads every "remote layer" / "remote image" line of a zsnap log; nullopt if there is none.
std::optional<StageTimes> ParseStageTimes(absl::string_view log);

// Summary of one image x codec x mode over reps (successful runs only).
struct BenchGroup {
  std::string image, codec, mode;
  int runs = 0;
  int failed = 0;
  std::optional<Spread> pull, ready, start, cpu;
};

// One image x codec: both modes side by side, ratios of the medians (zsnap / native).
struct BenchComparison {
  std::string image, codec;
  std::optional<BenchGroup> native, zsnap;
  std::optional<double> pull_ratio, ready_ratio;
  // Medians over zsnap's runs of the StageTimes fields (nullopt without zsnap logs).
  std::optional<StageTimes> stages;
};

// Groups runs by image x codec (in order of first appearance) and mode. `stages` holds the
// StageTimes of zsnap runs, keyed by BenchRun::zsnap_log (missing keys are fine).
std::vector<BenchComparison> Compare(const std::vector<BenchRun>& runs,
                                     const std::map<std::string, StageTimes>& stages = {});

// One row per run, with a header; RFC 4180 quoting where needed.
std::string ToCsv(const std::vector<BenchRun>& runs);
// {"runs": [...], "summary": [...]} with every figure in seconds.
nlohmann::json ToJson(const std::vector<BenchRun>& runs,
                      const std::vector<BenchComparison>& comparisons);
// The table a person reads: per image x codec and mode, median and min-max of pull and
// time-to-ready, ratios; then zsnap's stage breakdown. Markdown (renders as text too).
std::string FormatTable(const std::vector<BenchComparison>& comparisons);

}  // namespace zsnap::plugin
