// RunDaemon: the body of `zsnap serve`. Sets up logging, opens the Snapshotter at
// config.root, serves the Snapshots API on config.address until SIGINT/SIGTERM, then shuts
// down gracefully (in-flight RPCs get kShutdownGrace) and tells systemd at each step
// (sd_notify READY=1 / STOPPING=1; a no-op without systemd).
//
// Returns an error for an unusable root (not a directory, not writable, Open fails) or
// socket; the caller prints it and exits non-zero.
//
// Thread safety: call once, from the main thread, before any other thread exists (the signal
// mask must be inherited by every thread; see signals.h).
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "plugin/config.h"

namespace zsnap::plugin {

inline constexpr absl::Duration kShutdownGrace = absl::Seconds(10);

absl::Status RunDaemon(const Config& config);

// FailedPrecondition unless `root` is missing (Open creates it) or a writable directory.
absl::Status CheckRootUsable(const std::string& root);

}  // namespace zsnap::plugin
