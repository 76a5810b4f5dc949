// The `zsnap` command line: one binary, one subcommand per job.
//
//   zsnap serve    run the snapshotter daemon (daemon.h)
//   zsnap unpack   unpack one layer blob into a directory (unpack_command.h)
//   zsnap pull     pull an image through a runtime's CRI image service, as kubelet does
//                  (pull_command.h); zsnap rmi removes one the same way
//   zsnap bench    the cold-start benchmark, its images and report (bench_command.h)
//   zsnap config   check a config file / print the defaults (config.h); print or merge the
//                  containerd configuration (containerd_config.h)
//   zsnap stats    recent image pulls from the report history (pull_stats.h)
//   zsnap doctor   check the node and the containerd wiring (doctor.h)
//   zsnap version  build information (version.h); zsnap help [COMMAND]
//
// Each subcommand parses its own flags with a small GNU-style parser: `--name VALUE`,
// `--name=VALUE`, boolean `--name`, `--` ends flags, `-` is a positional (stdin), flags and
// positionals may interleave, `-h`/`--help` prints the subcommand's usage.
//
// Exit codes: 0 success, 1 the operation failed, 2 bad usage.
//
// Thread safety: RunCli runs once on the main thread, before any other thread exists.
#pragma once

#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace zsnap::plugin {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Runs `zsnap <argv[1]> ...`; returns the process exit code.
int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err);

// What ParseArgs found. Exposed for tests.
struct ParsedArgs {
  std::map<std::string, std::string> values;  // --name VALUE (last one wins)
  std::set<std::string> bools;                // --name
  std::vector<std::string> positional;
  bool help = false;
};

// `value_flags` take a value, `bool_flags` do not; any other flag is InvalidArgument.
absl::StatusOr<ParsedArgs> ParseArgs(absl::Span<const std::string> args,
                                     const std::set<std::string>& value_flags,
                                     const std::set<std::string>& bool_flags);

}  // namespace zsnap::plugin
