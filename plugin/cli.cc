#include "plugin/cli.h"

#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <stop_token>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "plugin/bench_command.h"
#include "plugin/config.h"
#include "plugin/cri_client.h"
#include "plugin/containerd_config.h"
#include "plugin/daemon.h"
#include "plugin/doctor.h"
#include "plugin/logging.h"
#include "plugin/pull_command.h"
#include "plugin/pull_stats.h"
#include "plugin/report_store.h"
#include "plugin/signals.h"
#include "plugin/subprocess.h"
#include "plugin/unpack_command.h"
#include "plugin/version.h"
#include "unpack/timing.h"

namespace zsnap::plugin {
namespace {

constexpr char kUsage[] =
    R"(zsnap - a containerd proxy snapshotter over overlayfs, with a streaming layer unpacker

Usage:
  zsnap serve [--config FILE] [--root DIR] [--address SOCKET] [--log-level LEVEL]
              [--log-format text|json]
  zsnap unpack [--media-type T] [--digest sha256:..] [--diff-id sha256:..] [--threads N]
               [--json] [--config FILE] BLOB|- DEST
  zsnap pull --cri-endpoint SOCKET [--creds USER:PASS] [--timeout DUR] [--json] IMAGE
  zsnap rmi --cri-endpoint SOCKET [--timeout DUR] IMAGE
  zsnap bench [--images LIST] [--codecs LIST] [--modes LIST] [--reps N] [--out DIR] [--rate R]
  zsnap bench images [--cache DIR] [--push HOST:PORT] | zsnap bench report DIR
  zsnap config check FILE | zsnap config default
  zsnap config containerd [--containerd-version V] [--address SOCKET] [--root DIR]
                          [--config FILE] [--merge CONTAINERD_TOML]
  zsnap stats [--config FILE | --root DIR] [--json] [--limit N]
  zsnap doctor [--config FILE] [--containerd-config FILE] [--containerd-address SOCKET]
               [--registry HOST[:PORT]] [--json]
  zsnap version [--json]
  zsnap help [COMMAND]

Run 'zsnap help COMMAND' or 'zsnap COMMAND --help' for a command's options.
)";

constexpr char kServeUsage[] =
    R"(Usage: zsnap serve [--config FILE] [--root DIR] [--address SOCKET] [--log-level LEVEL]
                   [--log-format text|json]

Serves containerd's Snapshots API (containerd.services.snapshots.v1) on a unix socket until
SIGINT or SIGTERM, then shuts down gracefully. Point containerd at it with
  [proxy_plugins.zsnap]
    type = "snapshot"
    address = "/run/zsnap/zsnap.sock"

Options:
  --config FILE        TOML config (see 'zsnap config default'); without it, the defaults
  --root DIR           state directory, overrides the config (default /var/lib/zsnap)
  --address SOCKET     unix socket path, overrides the config (default /run/zsnap/zsnap.sock)
  --log-level LEVEL    trace|debug|info|warn|error|critical|off, overrides the config
  --log-format FORMAT  text|json, overrides the config
)";

constexpr char kUnpackUsage[] =
    R"(Usage: zsnap unpack [options] BLOB|- DEST

Unpacks one OCI layer blob (a file, or '-' for stdin) into directory DEST in overlayfs form
(whiteouts as 0/0 character devices, opaque directories as xattrs). DEST is created if
missing and must be empty otherwise; on error nothing is left behind in it. Prints a timing
table, or with --json the timing record as one JSON object.

Options:
  --media-type T    layer media type (...tar, ...tar+gzip, ...tar+zstd); default: detect
  --digest D        expected sha256:<hex> of the blob; mismatch fails the unpack
  --diff-id D       expected sha256:<hex> of the uncompressed tar stream
  --threads N       writer threads, 0..1024 (0 = from the CPU count; default from config)
  --json            print the timing record as JSON instead of a table
  --config FILE     take the [unpack] limits and userxattr from this config file
)";

constexpr char kPullUsage[] =
    R"(Usage: zsnap pull --cri-endpoint SOCKET [--creds USER:PASS] [--timeout DUR] [--json] IMAGE

Pulls IMAGE through a container runtime's CRI image service (runtime.v1.ImageService/
PullImage), the call kubelet makes: containerd resolves, fetches and unpacks it with the
snapshotter its CRI plugin is configured with, in namespace k8s.io. Prints the image ID the
runtime returns and the wall time of the call, or with --json one object
{"image", "image_ref", "wall_s"}.

Options:
  --cri-endpoint SOCKET  the runtime's socket, /path or unix:///path
                         (containerd: /run/containerd/containerd.sock)
  --creds USER:PASS      registry credentials, sent as the CRI AuthConfig (visible in ps)
  --timeout DUR          deadline for the call: 90s, 10m, 1h30m; 0 = none (default 10m)
  --json                 print the result as one JSON object
)";

constexpr char kRmiUsage[] =
    R"(Usage: zsnap rmi --cri-endpoint SOCKET [--timeout DUR] IMAGE

Removes IMAGE (a reference or image ID) through a container runtime's CRI image service
(runtime.v1.ImageService/RemoveImage). An image that is not there is not an error.

Options:
  --cri-endpoint SOCKET  the runtime's socket, /path or unix:///path
  --timeout DUR          deadline for the call: 90s, 10m; 0 = none (default 2m)
)";

constexpr char kBenchUsage[] =
    R"(Usage: zsnap bench [--images LIST] [--codecs LIST] [--modes LIST] [--reps N] [--out DIR]
                   [--cache DIR] [--rate RATE] [--img-dir DIR]
       zsnap bench images [--cache DIR] [--push HOST:PORT]
       zsnap bench report DIR

The cold-start benchmark (run as root on an otherwise idle node). For every rep, image, codec
and mode, on a freshly made ext4 (a loop file) holding all of containerd's and zsnap's state,
with fresh processes and the page cache dropped: a CRI PullImage as kubelet makes it, then
`ctr -n k8s.io run` of the image up to its ready line. Modes alternate within a rep. A private
docker-registry on loopback serves the images. Prints progress, then medians, min-max and the
zsnap/native ratios; writes runs.jsonl, results.{csv,json,md,svg} and every daemon log to DIR.

  images   build the benchmark images from Debian packages (debootstrap, apt) into the cache:
           python (python3 + numpy/scipy/pandas, 4 layers), minbase and smallfiles (the
           Linux source tree, ~72k small files), each gzip, zstd and zstd19 (zstd -19);
           --push also pushes them to a plain-HTTP registry at HOST:PORT
  report   re-render the table, CSV, JSON and chart of a results DIR

Options:
  --images LIST   benchmark images, comma-separated: python, minbase, smallfiles
                  (default python)
  --codecs LIST   gzip, zstd, zstd19 (default gzip,zstd)
  --modes LIST    native (containerd's overlayfs), zsnap (default both)
  --reps N        1..100 (default 3)
  --out DIR       results dir (default <cache>/cold-start/<UTC time>)
  --cache DIR     where 'zsnap bench images' put the images (default /var/tmp/zsnap-bench-v2)
  --rate RATE     run the registry in a network namespace behind a veth pair shaped with
                  tc to RATE (e.g. 1gbit, 400mbit); default unlimited loopback
  --img-dir DIR   where the per-run ext4 loop file lives (default /dev/shm)
Scripts come from $ZSNAP_BENCH_DIR, /usr/share/zsnap/bench or the source tree's bench/.
)";

constexpr char kConfigUsage[] =
    R"(Usage: zsnap config check FILE
       zsnap config default
       zsnap config containerd [--containerd-version V] [--address SOCKET] [--root DIR]
                               [--config FILE] [--merge CONTAINERD_TOML]

check       parse and validate FILE, then print the effective configuration
default     print the default configuration (every key, as TOML)
containerd  print the containerd configuration that registers zsnap as a proxy snapshotter and
            makes CRI use it, for the given containerd version: config version 2 for 1.6/1.7,
            version 3 for 2.x (2.1+ adds the transfer-service unpack_config entry for this
            host's platform and exports.enable_remote_snapshot_annotations). With --merge, merge
            it into an existing containerd config.toml instead: the other settings are kept (its
            comments are not; they stay in the backup), a backup FILE.bak-<UTC time> is written
            first, the file is replaced atomically, and a file that already has every key is
            left alone. A missing FILE is created. A FILE whose config version does not match
            (e.g. version 2 with a 2.x request) is refused.

Options of 'config containerd':
  --containerd-version V  1.6, 1.7, 2.0, 2.1 or 2.x (= 2.1 and later), or a full version such
                          as 1.6.20; default: from FILE's version with --merge (2 -> 1.7,
                          3 -> 2.x), else from `containerd --version`
  --address SOCKET        zsnap's socket (default: from --config, else /run/zsnap/zsnap.sock)
  --root DIR              zsnap's root, exported to CRI (default: from --config, else
                          /var/lib/zsnap)
  --config FILE           zsnap config.toml to take address and root from
  --merge FILE            merge into the containerd config FILE instead of printing
)";

constexpr char kStatsUsage[] =
    R"(Usage: zsnap stats [--config FILE | --root DIR] [--json] [--limit N]

Shows the most recent image pulls zsnap served, newest first, from the report history under
<root>/reports (kept by the daemon, [reports] keep in the config): time, image, outcome,
layers pulled remotely / in the image, bytes in (compressed) and out (tar), wall time, the
seconds each stage took summed over the pull's layers, and throughput.

Options:
  --config FILE  take root from this config file
  --root DIR     the daemon's root (default /var/lib/zsnap)
  --json         print the reports as a JSON array instead of a table
  --limit N      at most N pulls, 1..100000 (default 20)
)";

constexpr char kDoctorUsage[] =
    R"(Usage: zsnap doctor [--config FILE] [--containerd-config FILE] [--containerd-address SOCKET]
                    [--registry HOST[:PORT]] [--json]

Checks this node for zsnap and prints one line per check, OK, WARN, FAIL or SKIP, with the fix
for anything not OK: overlayfs in the kernel, a real overlay mount and trusted.*/user.* xattrs
under zsnap's root, whether overlay needs userxattr here, zsnap answering on its socket, the
containerd config (zsnap proxy plugin with zsnap's address, CRI snapshotter = zsnap with
disable_snapshot_annotations = false, 2.x transfer-service keys), containerd's socket, `ctr
plugins ls` listing zsnap as ok (when ctr is on PATH) and, if asked, a TCP connect to a
registry. Exits 1 if any check FAILs. Changes nothing (the probe dir is removed).

Options:
  --config FILE               zsnap's config (default /etc/zsnap/config.toml if it exists)
  --containerd-config FILE    containerd's config (default /etc/containerd/config.toml)
  --containerd-address SOCK   containerd's socket (default: [grpc] address of that config,
                              else /run/containerd/containerd.sock)
  --registry HOST[:PORT]      also check that the registry is reachable (port 443 by default)
  --json                      print the results as one JSON object
)";

constexpr char kVersionUsage[] =
    R"(Usage: zsnap version [--json]

Prints the version of zsnap, the commit and build type it was built from, the compiler, and the
versions of the libraries it uses (gRPC, protobuf, Abseil, zstd, ISA-L, zlib, libarchive,
OpenSSL, SQLite, spdlog, toml++). --json prints them as one JSON object.
)";

const char* UsageFor(absl::string_view command) {
  if (command == "serve") return kServeUsage;
  if (command == "unpack") return kUnpackUsage;
  if (command == "pull") return kPullUsage;
  if (command == "rmi") return kRmiUsage;
  if (command == "bench") return kBenchUsage;
  if (command == "config") return kConfigUsage;
  if (command == "stats") return kStatsUsage;
  if (command == "version") return kVersionUsage;
  if (command == "doctor") return kDoctorUsage;
  return nullptr;
}

// Prints "zsnap CMD: message" and the usage hint; returns kExitUsage.
int UsageError(std::ostream& err, absl::string_view command, absl::string_view message) {
  err << "zsnap " << command << ": " << message << "\n"
      << "Run 'zsnap help " << command << "' for usage.\n";
  return kExitUsage;
}

int Failure(std::ostream& err, absl::string_view command, const absl::Status& status) {
  err << "zsnap " << command << ": " << status.message() << "\n";
  return kExitFailure;
}

std::optional<std::string> Value(const ParsedArgs& args, const std::string& name) {
  auto it = args.values.find(name);
  if (it == args.values.end()) return std::nullopt;
  return it->second;
}

int Serve(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  if (!args.positional.empty()) {
    return UsageError(err, "serve", absl::StrCat("unexpected argument '", args.positional[0], "'"));
  }
  Config config;
  if (std::optional<std::string> path = Value(args, "config")) {
    absl::StatusOr<Config> loaded = Config::Load(*path);
    if (!loaded.ok()) return Failure(err, "serve", loaded.status());
    config = *std::move(loaded);
  }
  if (auto root = Value(args, "root")) config.root = *root;
  if (auto address = Value(args, "address")) config.address = *address;
  if (auto level = Value(args, "log-level")) {
    absl::StatusOr<spdlog::level::level_enum> parsed = ParseLogLevel(*level);
    if (!parsed.ok()) return UsageError(err, "serve", parsed.status().message());
    config.log_level = *parsed;
  }
  if (auto format = Value(args, "log-format")) {
    absl::StatusOr<LogFormat> parsed = ParseLogFormat(*format);
    if (!parsed.ok()) return UsageError(err, "serve", parsed.status().message());
    config.log_format = *parsed;
  }
  if (absl::Status s = config.Validate(); !s.ok()) return Failure(err, "serve", s);
  if (absl::Status s = RunDaemon(config); !s.ok()) return Failure(err, "serve", s);
  return kExitOk;
}

int Unpack(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  if (args.positional.size() != 2) {
    return UsageError(err, "unpack", "want exactly two arguments: BLOB|- DEST");
  }
  UnpackArgs unpack_args;
  unpack_args.blob = args.positional[0];
  unpack_args.dest = args.positional[1];
  unpack_args.media_type = Value(args, "media-type").value_or("");
  unpack_args.digest = Value(args, "digest");
  unpack_args.diff_id = Value(args, "diff-id");
  if (auto threads = Value(args, "threads")) {
    int n = 0;
    if (!absl::SimpleAtoi(*threads, &n) || n < 0 || n > 1024) {
      return UsageError(
          err, "unpack",
          absl::StrCat("--threads wants an integer in 0..1024, got '", *threads, "'"));
    }
    unpack_args.threads = n;
  }
  if (auto path = Value(args, "config")) {
    absl::StatusOr<Config> config = Config::Load(*path);
    if (!config.ok()) return Failure(err, "unpack", config.status());
    unpack_args.limits = config->unpack;
    unpack_args.userxattr = config->userxattr == overlay::SnapshotterOptions::UserXattr::kOn;
  }

  // Library warnings go to stderr; stdout carries only the result.
  SetupLogging({.level = spdlog::level::warn, .format = LogFormat::kText});
  // Ctrl-C cancels the unpack, which then removes its partial output.
  std::stop_source stop;
  absl::StatusOr<std::unique_ptr<SignalWatcher>> signals =
      SignalWatcher::Start([&stop](int) { stop.request_stop(); });
  if (!signals.ok()) return Failure(err, "unpack", signals.status());

  absl::StatusOr<unpack::LayerTiming> timing = RunUnpack(unpack_args, stop.get_token());
  signals->reset();
  if (!timing.ok()) return Failure(err, "unpack", timing.status());
  if (args.bools.contains("json")) {
    out << unpack::ToJson(*timing).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
  } else {
    out << FormatTimingTable(*timing);
  }
  return kExitOk;
}

// Checks the --cri-endpoint and the single IMAGE of `pull` and `rmi`; the usage error's exit
// code if they are wrong.
std::optional<int> CheckCriArgs(const ParsedArgs& args, absl::string_view command,
                                std::ostream& err) {
  std::optional<std::string> endpoint = Value(args, "cri-endpoint");
  if (!endpoint.has_value()) return UsageError(err, command, "--cri-endpoint SOCKET is required");
  if (absl::StatusOr<std::string> target = CriTarget(*endpoint); !target.ok()) {
    return UsageError(err, command, target.status().message());
  }
  if (args.positional.size() != 1) return UsageError(err, command, "want exactly one IMAGE");
  if (args.positional[0].empty()) return UsageError(err, command, "IMAGE is empty");
  return std::nullopt;
}

int Pull(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  if (std::optional<int> usage = CheckCriArgs(args, "pull", err)) return *usage;
  PullArgs pull_args;
  pull_args.endpoint = *Value(args, "cri-endpoint");
  pull_args.image = args.positional[0];
  if (auto creds = Value(args, "creds")) {
    absl::StatusOr<CriAuth> auth = ParseCreds(*creds);
    if (!auth.ok()) return UsageError(err, "pull", auth.status().message());
    pull_args.auth = *std::move(auth);
  }
  if (auto timeout = Value(args, "timeout")) {
    absl::StatusOr<absl::Duration> parsed = ParseTimeout(*timeout);
    if (!parsed.ok()) return UsageError(err, "pull", parsed.status().message());
    pull_args.timeout = *parsed;
  }
  absl::StatusOr<PullResult> result = RunPull(pull_args);
  if (!result.ok()) return Failure(err, "pull", result.status());
  if (args.bools.contains("json")) {
    out << ToJson(*result).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    out << FormatPullResult(*result);
  }
  return kExitOk;
}

int Rmi(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  if (std::optional<int> usage = CheckCriArgs(args, "rmi", err)) return *usage;
  absl::Duration timeout = kDefaultRemoveTimeout;
  if (auto text = Value(args, "timeout")) {
    absl::StatusOr<absl::Duration> parsed = ParseTimeout(*text);
    if (!parsed.ok()) return UsageError(err, "rmi", parsed.status().message());
    timeout = *parsed;
  }
  const std::string& image = args.positional[0];
  if (absl::Status s = RunRemoveImage(*Value(args, "cri-endpoint"), image, timeout); !s.ok()) {
    return Failure(err, "rmi", s);
  }
  out << "removed " << image << "\n";
  return kExitOk;
}

// Asks `containerd --version` on PATH, for `config containerd` without --containerd-version.
absl::StatusOr<ContainerdSeries> InstalledContainerdSeries() {
  absl::StatusOr<CommandResult> run = RunCommand({"containerd", "--version"}, absl::Seconds(10));
  if (!run.ok()) return run.status();
  // "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1"
  for (absl::string_view word : absl::StrSplit(run->output, absl::ByAnyChar(" \t\n"))) {
    if (absl::ConsumePrefix(&word, "v") || (!word.empty() && absl::ascii_isdigit(word[0]))) {
      if (absl::StatusOr<ContainerdSeries> s = ParseContainerdSeries(word); s.ok()) return s;
    }
  }
  return absl::NotFoundError(absl::StrCat("no version in `containerd --version`: ", run->output));
}

int ConfigContainerd(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  if (args.positional.size() != 1) {
    return UsageError(err, "config", "'config containerd' takes no arguments besides flags");
  }
  ContainerdSnippetOptions options;
  options.address = kDefaultAddress;
  options.root = kDefaultRoot;
  if (auto path = Value(args, "config")) {
    absl::StatusOr<Config> config = Config::Load(*path);
    if (!config.ok()) return Failure(err, "config", config.status());
    options.address = config->address;
    options.root = config->root;
  }
  if (auto address = Value(args, "address")) options.address = *address;
  if (auto root = Value(args, "root")) options.root = *root;
  if (options.address.empty() || options.address[0] != '/' || options.root.empty() ||
      options.root[0] != '/') {
    return UsageError(err, "config", "--address and --root must be absolute paths");
  }
  const std::optional<std::string> merge = Value(args, "merge");
  if (auto version = Value(args, "containerd-version")) {
    absl::StatusOr<ContainerdSeries> series = ParseContainerdSeries(*version);
    if (!series.ok()) return UsageError(err, "config", series.status().message());
    options.series = *series;
  } else if (merge.has_value()) {
    // From the file: version 2 is a 1.x config, 3/4 a 2.x one; a new file gets the installed
    // containerd's (or 2.x's) shape.
    std::ifstream in(*merge);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<int> v =
        in ? ContainerdConfigVersion(text.str(), *merge) : absl::StatusOr<int>(0);
    if (!v.ok()) return Failure(err, "config", v.status());
    if (*v == 2) {
      options.series = ContainerdSeries::k1_7;
    } else if (*v == 3 || *v == 4) {
      options.series = ContainerdSeries::k2_1Plus;
    } else {
      absl::StatusOr<ContainerdSeries> installed = InstalledContainerdSeries();
      if (!installed.ok()) {
        return UsageError(err, "config",
                          absl::StrCat("cannot tell the containerd version from ", *merge,
                                       " or `containerd --version` (", installed.status().message(),
                                       "); pass --containerd-version"));
      }
      options.series = *installed;
    }
  } else {
    absl::StatusOr<ContainerdSeries> installed = InstalledContainerdSeries();
    if (!installed.ok()) {
      return UsageError(err, "config",
                        absl::StrCat("cannot ask containerd for its version (",
                                     installed.status().message(), "); pass --containerd-version"));
    }
    options.series = *installed;
  }

  if (!merge.has_value()) {
    out << RenderContainerdSnippet(options);
    return kExitOk;
  }
  absl::StatusOr<ContainerdMergeFileResult> result =
      MergeContainerdConfigFile(*merge, options, absl::Now());
  if (!result.ok()) return Failure(err, "config", result.status());
  if (result->changes.empty()) {
    out << *merge << ": already configured for zsnap (containerd "
        << ContainerdSeriesName(options.series) << "), left unchanged\n";
    return kExitOk;
  }
  out << *merge << (result->created ? ": created" : ": updated") << " for zsnap (containerd "
      << ContainerdSeriesName(options.series) << ")";
  if (!result->backup.empty()) out << ", backup in " << result->backup;
  out << "\n";
  for (const std::string& change : result->changes) out << "  " << change << "\n";
  out << "Restart containerd to apply it (systemctl restart containerd).\n";
  return kExitOk;
}

int Bench(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  const std::vector<std::string>& pos = args.positional;
  if (pos.empty()) {
    if (args.values.contains("push"))
      return UsageError(err, "bench", "--push is for 'bench images'");
    return RunBench(args.values, out, err);
  }
  if (pos[0] == "images" && pos.size() == 1) {
    for (const auto& [name, value] : args.values) {
      if (name != "cache" && name != "push") {
        return UsageError(err, "bench",
                          absl::StrCat("--", name, " is not an option of 'bench images'"));
      }
    }
    return RunBenchImages(args.values, out, err);
  }
  if (pos[0] == "report" && pos.size() == 2) {
    if (!args.values.empty()) return UsageError(err, "bench", "'bench report' takes no options");
    return RunBenchReport(pos[1], out, err);
  }
  return UsageError(err, "bench", "want no argument, 'images' or 'report DIR'");
}

int ConfigCommand(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  const std::vector<std::string>& pos = args.positional;
  if (!pos.empty() && pos[0] == "containerd") return ConfigContainerd(args, out, err);
  if (!args.values.empty()) {
    return UsageError(
        err, "config",
        absl::StrCat("--", args.values.begin()->first, " belongs to 'config containerd'"));
  }
  if (pos.size() == 1 && pos[0] == "default") {
    out << Config().ToToml();
    return kExitOk;
  }
  if (pos.size() == 2 && pos[0] == "check") {
    absl::StatusOr<Config> config = Config::Load(pos[1]);
    if (!config.ok()) return Failure(err, "config", config.status());
    out << "# " << pos[1] << ": ok; effective configuration:\n" << config->ToToml();
    return kExitOk;
  }
  return UsageError(err, "config", "want 'check FILE', 'default' or 'containerd'");
}

int Stats(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  if (!args.positional.empty()) {
    return UsageError(err, "stats", absl::StrCat("unexpected argument '", args.positional[0], "'"));
  }
  std::optional<std::string> config_path = Value(args, "config");
  std::optional<std::string> root = Value(args, "root");
  if (config_path && root) return UsageError(err, "stats", "give --config or --root, not both");
  if (config_path) {
    absl::StatusOr<Config> config = Config::Load(*config_path);
    if (!config.ok()) return Failure(err, "stats", config.status());
    root = config->root;
  }
  size_t limit = 20;
  if (auto text = Value(args, "limit")) {
    if (!absl::SimpleAtoi(*text, &limit) || limit < 1 || limit > kMaxReportsKeep) {
      return UsageError(err, "stats",
                        absl::StrCat("--limit wants an integer in 1..100000, got '", *text, "'"));
    }
  }
  const std::string dir = ReportsDir(root.value_or(kDefaultRoot));
  if (absl::Status s = PrintStats(dir, limit, args.bools.contains("json"), out, err); !s.ok()) {
    return Failure(err, "stats", s);
  }
  return kExitOk;
}

int Version(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  if (!args.positional.empty()) return UsageError(err, "version", "takes no arguments");
  const BuildInfo info = GetBuildInfo();
  if (args.bools.contains("json")) {
    out << BuildInfoJson(info).dump() << "\n";
  } else {
    out << FormatBuildInfo(info);
  }
  return kExitOk;
}

constexpr char kDefaultZsnapConfig[] = "/etc/zsnap/config.toml";

int Doctor(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  if (!args.positional.empty()) {
    return UsageError(err, "doctor",
                      absl::StrCat("unexpected argument '", args.positional[0], "'"));
  }
  DoctorOptions options;
  std::optional<std::string> config_path = Value(args, "config");
  if (!config_path.has_value() && access(kDefaultZsnapConfig, F_OK) == 0) {
    config_path = kDefaultZsnapConfig;
  }
  if (config_path.has_value()) {
    absl::StatusOr<Config> config = Config::Load(*config_path);
    if (!config.ok()) return Failure(err, "doctor", config.status());
    options.zsnap = *std::move(config);
    options.zsnap_config_path = *config_path;
  }
  if (auto path = Value(args, "containerd-config")) options.containerd_config_path = *path;
  if (auto address = Value(args, "containerd-address")) options.containerd_address = *address;
  if (auto registry = Value(args, "registry")) options.registry = *registry;

  const std::vector<CheckResult> results = RunDoctor(options);
  if (args.bools.contains("json")) {
    out << DoctorReportJson(results).dump() << "\n";
  } else {
    out << "zsnap doctor: config " << (config_path ? *config_path : "(defaults)") << ", root "
        << options.zsnap.root << ", socket " << options.zsnap.address << "\n"
        << FormatDoctorReport(results);
  }
  return AnyFailed(results) ? kExitFailure : kExitOk;
}

}  // namespace

absl::StatusOr<ParsedArgs> ParseArgs(absl::Span<const std::string> args,
                                     const std::set<std::string>& value_flags,
                                     const std::set<std::string>& bool_flags) {
  ParsedArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      parsed.positional.insert(parsed.positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg == "-h" || arg == "--help") {
      parsed.help = true;
      continue;
    }
    if (arg.size() < 2 || arg[0] != '-') {  // includes "-" (stdin)
      parsed.positional.push_back(arg);
      continue;
    }
    if (arg[1] != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", arg, "' (flags are spelled --name)"));
    }
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    if (bool_flags.contains(name)) {
      if (eq != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " takes no value"));
      }
      parsed.bools.insert(name);
      continue;
    }
    if (!value_flags.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (eq != std::string::npos) {
      parsed.values[name] = arg.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      parsed.values[name] = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
    }
  }
  return parsed;
}

int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err) {
  const std::vector<std::string> all(argv + 1, argv + argc);
  if (all.empty()) {
    err << kUsage;
    return kExitUsage;
  }
  const std::string& command = all[0];
  const absl::Span<const std::string> rest = absl::MakeConstSpan(all).subspan(1);

  if (command == "help" || command == "--help" || command == "-h") {
    if (rest.empty()) {
      out << kUsage;
      return kExitOk;
    }
    if (const char* usage = UsageFor(rest[0])) {
      out << usage;
      return kExitOk;
    }
    return UsageError(err, "help", absl::StrCat("unknown command '", rest[0], "'"));
  }
  if (command == "--version") return Version({}, out, err);

  struct Command {
    std::set<std::string> value_flags;
    std::set<std::string> bool_flags;
    int (*run)(const ParsedArgs&, std::ostream&, std::ostream&);
  };
  const std::map<std::string, Command> commands = {
      {"serve", {{"config", "root", "address", "log-level", "log-format"}, {}, Serve}},
      {"unpack", {{"media-type", "digest", "diff-id", "threads", "config"}, {"json"}, Unpack}},
      {"pull", {{"cri-endpoint", "creds", "timeout"}, {"json"}, Pull}},
      {"rmi", {{"cri-endpoint", "timeout"}, {}, Rmi}},
      {"config", {{"containerd-version", "address", "root", "config", "merge"}, {}, ConfigCommand}},
      {"stats", {{"config", "root", "limit"}, {"json"}, Stats}},
      {"doctor",
       {{"config", "containerd-config", "containerd-address", "registry"}, {"json"}, Doctor}},
      {"version", {{}, {"json"}, Version}},
      {"bench",
       {{"images", "codecs", "modes", "reps", "out", "cache", "rate", "img-dir", "push"},
        {},
        Bench}},
  };
  auto it = commands.find(command);
  if (it == commands.end()) {
    err << "zsnap: unknown command '" << command << "'\n\n" << kUsage;
    return kExitUsage;
  }
  absl::StatusOr<ParsedArgs> parsed =
      ParseArgs(rest, it->second.value_flags, it->second.bool_flags);
  if (!parsed.ok()) return UsageError(err, command, parsed.status().message());
  if (parsed->help) {
    out << UsageFor(command);
    return kExitOk;
  }
  return it->second.run(*parsed, out, err);
}

}  // namespace zsnap::plugin
