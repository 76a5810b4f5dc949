// `zsnap doctor`: checks that a node can run zsnap and that containerd is wired to it, and says
// how to fix what is not.
//
// Checks, in order (each OK, WARN, FAIL or SKIP, with a suggested fix when not OK):
//   kernel/overlayfs       "overlay" in /proc/filesystems
//   root/overlay-mount     a real overlay mount in a temp dir under zsnap's root
//   root/xattr-trusted     trusted.* xattrs on zsnap's root filesystem (whiteouts, opaque dirs)
//   root/xattr-user        user.* xattrs (only needed with userxattr)
//   userxattr              whether overlay needs "userxattr" here (user namespace) vs the config
//   zsnap/socket           zsnap answers a Snapshots List on its socket
//   containerd/config-*    the containerd config has the zsnap proxy plugin with zsnap's address,
//                          CRI uses it with disable_snapshot_annotations = false, and for 2.x
//                          the transfer-service keys; WARN when it `imports` other files
//                          (only the main file is read)
//   containerd/socket      containerd's socket accepts a connection
//   containerd/plugin      `ctr plugins ls` reports the zsnap snapshotter "ok" (if ctr exists)
//   registry               TCP connect to --registry HOST[:PORT] (only when asked)
// The temp dir of the mount/xattr checks is removed afterwards; doctor changes nothing else.
//
// Thread safety: RunDoctor runs the checks one after another on the calling thread; the check
// functions are independent and hold no state.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "plugin/config.h"

namespace zsnap::plugin {

enum class CheckLevel { kOk, kWarn, kFail, kSkip };
absl::string_view CheckLevelName(CheckLevel level);  // "OK", "WARN", "FAIL", "SKIP"

struct CheckResult {
  std::string name;  // e.g. "kernel/overlayfs"
  CheckLevel level = CheckLevel::kOk;
  std::string detail;  // what was found
  std::string fix;     // what to do, empty when OK
};

struct DoctorOptions {
  Config zsnap;                   // zsnap's configuration (root, address, userxattr)
  std::string zsnap_config_path;  // where it came from, for messages ("" = defaults)
  std::string containerd_config_path = "/etc/containerd/config.toml";
  std::string containerd_address;  // "" = [grpc] address of the config, else the default
  std::string registry;            // HOST[:PORT]; "" = skip the registry check
  std::string proc_filesystems = "/proc/filesystems";
  std::string ctr = "ctr";                    // looked up on PATH; "" = do not run ctr
  absl::Duration timeout = absl::Seconds(5);  // per network check / ctr run
};

std::vector<CheckResult> RunDoctor(const DoctorOptions& options);

bool AnyFailed(const std::vector<CheckResult>& results);
// One line per check ("OK    kernel/overlayfs: ..."), an indented "fix:" line under the
// others, and a summary line.
std::string FormatDoctorReport(const std::vector<CheckResult>& results);
nlohmann::json DoctorReportJson(const std::vector<CheckResult>& results);

// The checks, exposed for tests.
CheckResult CheckOverlayListed(absl::string_view proc_filesystems_text);
// Mount and xattr probes in a temp dir under `root` (or its nearest existing ancestor).
std::vector<CheckResult> CheckRootFilesystem(const std::string& root, bool userxattr_needed);
CheckResult CheckUserxattr(overlay::SnapshotterOptions::UserXattr mode, bool needed);
CheckResult CheckZsnapSocket(const std::string& address, absl::Duration timeout);
// Parses a containerd config text and checks the zsnap wiring for `zsnap`'s address/root.
// `source` names the file in messages and fixes.
std::vector<CheckResult> CheckContainerdConfigText(absl::string_view text,
                                                   const std::string& source, const Config& zsnap);
// containerd's gRPC socket from a config text ([grpc] address), or the default.
std::string ContainerdAddressFromConfig(absl::string_view text);
CheckResult CheckContainerdSocket(const std::string& address, absl::Duration timeout);
CheckResult CheckCtrPlugins(const std::string& ctr, const std::string& address,
                            absl::Duration timeout);
// Finds the zsnap snapshotter's STATUS in `ctr plugins ls` output ("" if not listed).
std::string SnapshotterStatusFromCtr(absl::string_view ctr_output, absl::string_view name);
CheckResult CheckRegistry(const std::string& host_port, absl::Duration timeout);

}  // namespace zsnap::plugin
