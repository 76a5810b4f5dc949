// Runs a helper program (e.g. `ctr plugins ls` for `zsnap doctor`) with a time limit and
// captures its output. The child gets /dev/null as stdin and one pipe for stdout+stderr; on
// timeout it is killed (SIGKILL) and reaped. Output beyond `max_output` bytes is dropped.
//
// Thread safety: safe from any thread; uses posix_spawnp (no fork of a threaded process).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace zsnap::plugin {

struct CommandResult {
  int exit_code = -1;  // exit status, or 128+signal
  std::string output;  // stdout and stderr, interleaved
};

// NotFound if argv[0] is not on PATH, DeadlineExceeded after `timeout`.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout, size_t max_output = 1 << 20);

}  // namespace zsnap::plugin
