#include "plugin/daemon.h"

#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "overlay/mounts.h"
#include "overlay/snapshotter.h"
#include "plugin/logging.h"
#include "plugin/server.h"
#include "plugin/signals.h"
#include "plugin/snapshots_service.h"
#include "plugin/telemetry.h"
#include "spdlog/spdlog.h"
#include "unpack/docker_credentials.h"
#include "unpack/image_source.h"
#include "unpack/layer_puller.h"
#include "unpack/registry_client.h"
#include "unpack/remote_snapshotter.h"

namespace zsnap::plugin {
namespace {

void Notify(const char* state) {
  // sd_notify returns 0 when NOTIFY_SOCKET is unset (not under systemd): nothing to do.
  if (int r = sd_notify(0, state); r < 0) {
    spdlog::warn("sd_notify({}): {}", state, std::strerror(-r));
  }
}

// Builds the remote path around `inner`: registry client (hosts.toml, docker credentials),
// image source, layer puller (staging under the root, cleared of a previous run's leftovers).
absl::StatusOr<std::unique_ptr<overlay::Snapshotter>> StartRemote(
    const Config& config, std::unique_ptr<overlay::Snapshotter> inner,
    unpack::PullObserver* observer, std::unique_ptr<unpack::RegistryClient>& registry,
    std::unique_ptr<unpack::RegistryImageSource>& image_source,
    std::unique_ptr<unpack::LayerPuller>& puller) {
  const RemoteConfig& rc = config.remote;
  unpack::RegistryClientOptions ro;
  ro.hosts.config_dir = rc.hosts_dir;
  unpack::DockerCredentialsOptions co;
  co.config_path = rc.docker_config;
  absl::StatusOr<unpack::DockerCredentials> creds = unpack::DockerCredentials::Load(co);
  if (!creds.ok()) {
    return absl::Status(creds.status().code(),
                        absl::StrCat("remote: registry credentials: ", creds.status().message()));
  }
  ro.credentials = creds->AsLookup();
  ro.timeouts.connect = std::chrono::seconds(rc.connect_timeout_s);
  ro.timeouts.io = std::chrono::seconds(rc.io_timeout_s);
  ro.retry.max_attempts = rc.max_attempts;
  registry = std::make_unique<unpack::RegistryClient>(std::move(ro));
  image_source = std::make_unique<unpack::RegistryImageSource>(*registry);

  unpack::LayerPullerOptions po;
  po.staging_dir = absl::StrCat(inner->root(), "/staging");
  if (absl::Status s = unpack::LayerPuller::ClearStaging(po.staging_dir); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("remote: clearing staging: ", s.message()));
  }
  po.max_concurrent_layers = rc.max_concurrent_layers;
  po.max_concurrent_layers_per_image = rc.max_concurrent_layers_per_image;
  po.unclaimed_ttl = absl::Seconds(rc.unclaimed_ttl_s);
  po.limits = config.unpack.Limits();
  po.writer_threads = config.unpack.writer_threads;
  switch (config.userxattr) {
    case overlay::SnapshotterOptions::UserXattr::kOn:
      po.userxattr = true;
      break;
    case overlay::SnapshotterOptions::UserXattr::kOff:
      po.userxattr = false;
      break;
    case overlay::SnapshotterOptions::UserXattr::kAuto:
      po.userxattr = overlay::NeedsUserxattr(inner->root());
      break;
  }
  puller = std::make_unique<unpack::LayerPuller>(*image_source, po, observer);
  LogEvent(spdlog::level::info, "remote",
           {{"enabled", "true"},
            {"hosts_dir", rc.hosts_dir},
            {"max_concurrent_layers", absl::StrCat(rc.max_concurrent_layers)},
            {"max_concurrent_layers_per_image", absl::StrCat(rc.max_concurrent_layers_per_image)},
            {"staging", po.staging_dir}});
  return std::make_unique<unpack::RemoteSnapshotter>(std::move(inner), *puller, observer);
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

  // Metrics, pull reports and /metrics; the remote puller reports to its PullObserver. Declared
  // before the remote path so that the recorder outlives the puller that calls it.
  absl::StatusOr<std::unique_ptr<Telemetry>> telemetry = Telemetry::Start(config);
  if (!telemetry.ok()) return telemetry.status();

  // The remote path (containerd-api.md §3) wraps the overlay snapshotter; declared in this
  // order so that teardown runs remote -> puller -> image source -> registry client.
  std::unique_ptr<unpack::RegistryClient> registry;
  std::unique_ptr<unpack::RegistryImageSource> image_source;
  std::unique_ptr<unpack::LayerPuller> puller;
  std::unique_ptr<overlay::Snapshotter> served = *std::move(snapshotter);
  if (config.remote.enabled) {
    absl::StatusOr<std::unique_ptr<overlay::Snapshotter>> remote = StartRemote(
        config, std::move(served), (*telemetry)->pull_observer(), registry, image_source, puller);
    if (!remote.ok()) return remote.status();
    served = *std::move(remote);
  }

  SnapshotsService service(*served);
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(config.address, service, (*telemetry)->GrpcInterceptors());
  if (!server.ok()) return server.status();

  Notify("READY=1");
  LogEvent(spdlog::level::info, "serving",
           {{"address", config.address}, {"root", config.root}, {"version", ZSNAP_VERSION}});

  stop.WaitForNotification();
  Notify("STOPPING=1");
  // Prepares waiting for a layer fall back now instead of holding the server past its grace.
  if (puller != nullptr) puller->Shutdown();
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
