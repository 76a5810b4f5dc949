#include "plugin/daemon.h"

#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "overlay/snapshotter.h"
#include "plugin/logging.h"
#include "plugin/server.h"
#include "plugin/signals.h"
#include "plugin/snapshots_service.h"
#include "plugin/telemetry.h"
#include "spdlog/spdlog.h"

namespace zsnap::plugin {
namespace {

void Notify(const char* state) {
  // sd_notify returns 0 when NOTIFY_SOCKET is unset (not under systemd): nothing to do.
  if (int r = sd_notify(0, state); r < 0) {
    spdlog::warn("sd_notify({}): {}", state, std::strerror(-r));
  }
}

}  // namespace

absl::Status CheckRootUsable(const std::string& root) {
  struct stat st;
  if (stat(root.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("root ", root, " is unusable: ", std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("root ", root, " is not a directory"));
  }
  if (access(root.c_str(), W_OK | X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("root ", root, " is not writable: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status RunDaemon(const Config& config) {
  SetupLogging({.level = config.log_level, .format = config.log_format});

  absl::Notification stop;
  absl::StatusOr<std::unique_ptr<SignalWatcher>> signals = SignalWatcher::Start([&stop](int signo) {
    LogEvent(spdlog::level::info, "signal", {{"signal", signo == SIGTERM ? "SIGTERM" : "SIGINT"}});
    if (!stop.HasBeenNotified()) stop.Notify();
  });
  if (!signals.ok()) return signals.status();

  if (absl::Status s = CheckRootUsable(config.root); !s.ok()) return s;
  overlay::SnapshotterOptions options;
  options.root = config.root;
  options.userxattr = config.userxattr;
  absl::StatusOr<std::unique_ptr<overlay::Snapshotter>> snapshotter =
      overlay::Snapshotter::Open(options);
  if (!snapshotter.ok()) {
    return absl::Status(snapshotter.status().code(),
                        absl::StrCat("cannot open snapshotter root ", config.root, ": ",
                                     snapshotter.status().message()));
  }

  // Metrics, pull reports and /metrics; the remote puller reports to (*telemetry)->pull_observer().
  absl::StatusOr<std::unique_ptr<Telemetry>> telemetry = Telemetry::Start(config);
  if (!telemetry.ok()) return telemetry.status();

  SnapshotsService service(**snapshotter);
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(config.address, service, (*telemetry)->GrpcInterceptors());
  if (!server.ok()) return server.status();

  Notify("READY=1");
  LogEvent(spdlog::level::info, "serving",
           {{"address", config.address}, {"root", config.root}, {"version", ZSNAP_VERSION}});

  stop.WaitForNotification();
  Notify("STOPPING=1");
  LogEvent(spdlog::level::info, "stopping",
           {{"grace_s", absl::StrCat(absl::ToDoubleSeconds(kShutdownGrace))}});
  (*server)->Shutdown(kShutdownGrace);
  (*server)->Wait();
  server->reset();
  (*telemetry)->Stop();
  LogEvent(spdlog::level::info, "stopped", {{"address", config.address}});
  return absl::OkStatus();
}

}  // namespace zsnap::plugin
