#include "plugin/cli.h"

#include <grpcpp/grpcpp.h>

#include <optional>
#include <stop_token>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "plugin/bench_command.h"
#include "plugin/config.h"
#include "plugin/cri_client.h"
#include "plugin/daemon.h"
#include "plugin/logging.h"
#include "plugin/pull_command.h"
#include "plugin/signals.h"
#include "plugin/unpack_command.h"
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
  zsnap version
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
           python (python3 + numpy/scipy/pandas, 4 layers) and minbase, each gzip and zstd;
           --push also pushes them to a plain-HTTP registry at HOST:PORT
  report   re-render the table, CSV, JSON and chart of a results DIR

Options:
  --images LIST   benchmark images, comma-separated: python, minbase (default python)
  --codecs LIST   gzip, zstd (default both)
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

check    parse and validate FILE, then print the effective configuration
default  print the default configuration (every key, as TOML)
)";

constexpr char kVersionUsage[] = "Usage: zsnap version\n\nPrints the version of zsnap.\n";

const char* UsageFor(absl::string_view command) {
  if (command == "serve") return kServeUsage;
  if (command == "unpack") return kUnpackUsage;
  if (command == "pull") return kPullUsage;
  if (command == "rmi") return kRmiUsage;
  if (command == "bench") return kBenchUsage;
  if (command == "config") return kConfigUsage;
  if (command == "version") return kVersionUsage;
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
  return UsageError(err, "config", "want 'check FILE' or 'default'");
}

int Version(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  if (!args.positional.empty()) return UsageError(err, "version", "takes no arguments");
  out << "zsnap " << ZSNAP_VERSION << " (grpc " << grpc::Version() << ")\n";
  return kExitOk;
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
      {"bench",
       {{"images", "codecs", "modes", "reps", "out", "cache", "rate", "img-dir", "push"},
        {},
        Bench}},
      {"config", {{}, {}, ConfigCommand}},
      {"version", {{}, {}, Version}},
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
