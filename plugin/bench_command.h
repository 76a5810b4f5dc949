// The body of `zsnap bench`: the cold-start benchmark a node operator runs.
//
// Split of work: the orchestration of system tools (mkfs on a loop file, mount, a registry, a
// private containerd with CRI, zsnap, drop_caches, `ctr run`, tc/netns) is a shipped bash script,
// bench/cold_start.sh, because that is what it is — a sequence of commands whose every step an
// operator can read, rerun and adapt (the same for bench/images.sh, which drives debootstrap and
// apt). The command here validates the arguments, finds the scripts (build tree or the installed
// /usr/share/zsnap/bench), runs them with this very binary as the zsnap under test, and turns the
// script's raw per-run records (runs.jsonl + zsnap's logs) into the statistics, CSV, JSON,
// table and SVG chart (bench_report.h, bench_chart.h), which are unit-tested C++.
//
//   zsnap bench [--images LIST] [--codecs LIST] [--modes LIST] [--reps N] [--out DIR] ...
//   zsnap bench images [--cache DIR] [--push HOST:PORT]
//   zsnap bench report DIR
//
// Thread safety: runs on the CLI's main thread; child processes are waited for.
#pragma once

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace zsnap::plugin {

inline constexpr char kBenchScriptDirEnv[] = "ZSNAP_BENCH_DIR";
inline constexpr char kDefaultBenchCache[] = "/var/tmp/zsnap-bench-v2";

struct BenchOptions {
  std::vector<std::string> images = {"python"};
  std::vector<std::string> codecs = {"gzip", "zstd"};
  std::vector<std::string> modes = {"native", "zsnap"};
  int reps = 3;
  std::string out;                         // results dir; "" = <cache>/cold-start/<UTC timestamp>
  std::string cache = kDefaultBenchCache;  // images built by `zsnap bench images`
  std::string rate;     // registry bandwidth limit for tc, e.g. "1gbit"; "" = none
  std::string img_dir;  // where the per-run ext4 loop file lives; "" = the script's default
};

// From the flag values of `zsnap bench` (name without "--" -> value). Lists are comma- or
// space-separated. InvalidArgument naming the flag for: reps outside 1..100, an unknown codec
// (gzip, zstd, zstd19 = zstd -19) or mode (native, zsnap), an empty list, an image name that is
// not [a-z0-9-]+, a rate that is not <number>[k|m|g]bit.
absl::StatusOr<BenchOptions> ParseBenchOptions(const std::map<std::string, std::string>& values);

// The driver's argv (without the interpreter): script path, then its flags.
std::vector<std::string> ColdStartArgv(const BenchOptions& options, const std::string& script,
                                       const std::string& zsnap_binary);

// The directory holding cold_start.sh and images.sh: $ZSNAP_BENCH_DIR, else
// <dir of exe>/../share/zsnap/bench (the installed layout), else the source tree's bench/
// (a build-tree binary). NotFound listing where it looked.
absl::StatusOr<std::string> FindBenchDir(const std::string& exe_path);

// Reads DIR/runs.jsonl and the zsnap logs it names; writes DIR/results.{csv,json,md,svg};
// prints the table to `out`. `subtitle` goes under the chart title (the machine).
absl::Status WriteBenchReport(const std::string& dir, std::ostream& out);

// The three subcommands; return the exit code.
int RunBench(const std::map<std::string, std::string>& values, std::ostream& out,
             std::ostream& err);
int RunBenchImages(const std::map<std::string, std::string>& values, std::ostream& out,
                   std::ostream& err);
int RunBenchReport(const std::string& dir, std::ostream& out, std::ostream& err);

}  // namespace zsnap::plugin
