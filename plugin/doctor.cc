// RunDoctor and the report; the checks live in doctor_node.cc and doctor_containerd.cc.
#include "plugin/doctor.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "overlay/mounts.h"

namespace zsnap::plugin {
namespace {

// Reads a small text file; nullopt if it cannot be opened.
std::optional<std::string> Slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::string_view CheckLevelName(CheckLevel level) {
  switch (level) {
    case CheckLevel::kOk:
      return "OK";
    case CheckLevel::kWarn:
      return "WARN";
    case CheckLevel::kFail:
      return "FAIL";
    case CheckLevel::kSkip:
      break;
  }
  return "SKIP";
}

std::vector<CheckResult> RunDoctor(const DoctorOptions& o) {
  std::vector<CheckResult> results;
  const auto add = [&results](CheckResult r) { results.push_back(std::move(r)); };
  const auto add_all = [&results](std::vector<CheckResult> rs) {
    for (CheckResult& r : rs) results.push_back(std::move(r));
  };

  if (std::optional<std::string> fs = Slurp(o.proc_filesystems)) {
    add(CheckOverlayListed(*fs));
  } else {
    add({"kernel/overlayfs", CheckLevel::kFail, absl::StrCat("cannot read ", o.proc_filesystems),
         "mount /proc"});
  }
  const bool userxattr_needed = overlay::NeedsUserxattr(o.zsnap.root);
  add_all(CheckRootFilesystem(o.zsnap.root, userxattr_needed));
  add(CheckUserxattr(o.zsnap.userxattr, userxattr_needed));
  add(CheckZsnapSocket(o.zsnap.address, o.timeout));

  std::string containerd_address = o.containerd_address;
  if (std::optional<std::string> text = Slurp(o.containerd_config_path)) {
    add_all(CheckContainerdConfigText(*text, o.containerd_config_path, o.zsnap));
    if (containerd_address.empty()) containerd_address = ContainerdAddressFromConfig(*text);
  } else {
    add({"containerd/config", CheckLevel::kFail,
         absl::StrCat("cannot read ", o.containerd_config_path,
                      ": containerd runs on its built-in defaults, which do not know zsnap"),
         absl::StrCat("zsnap config containerd --merge ", o.containerd_config_path,
                      " --containerd-version <1.6|1.7|2.0|2.x> (creates the file), then "
                      "systemctl restart containerd")});
    if (containerd_address.empty()) containerd_address = ContainerdAddressFromConfig("");
  }
  CheckResult socket = CheckContainerdSocket(containerd_address, o.timeout);
  const bool containerd_up = socket.level == CheckLevel::kOk;
  add(std::move(socket));
  if (!o.ctr.empty()) {
    // ctr keeps retrying a missing socket until its own timeout: not worth waiting for.
    add(containerd_up ? CheckCtrPlugins(o.ctr, containerd_address, o.timeout)
                      : CheckResult{"containerd/plugin", CheckLevel::kSkip,
                                    "containerd is not reachable", ""});
  }
  if (!o.registry.empty()) add(CheckRegistry(o.registry, o.timeout));
  return results;
}

bool AnyFailed(const std::vector<CheckResult>& results) {
  for (const CheckResult& r : results) {
    if (r.level == CheckLevel::kFail) return true;
  }
  return false;
}

std::string FormatDoctorReport(const std::vector<CheckResult>& results) {
  std::string out;
  int counts[4] = {0, 0, 0, 0};
  for (const CheckResult& r : results) {
    ++counts[static_cast<int>(r.level)];
    const absl::string_view level = CheckLevelName(r.level);
    absl::StrAppend(&out, level, std::string(6 - level.size(), ' '), r.name, ": ", r.detail, "\n");
    if (!r.fix.empty()) absl::StrAppend(&out, "      fix: ", r.fix, "\n");
  }
  absl::StrAppend(&out, counts[0], " ok, ", counts[1], " warnings, ", counts[2], " failed, ",
                  counts[3], " skipped\n");
  return out;
}

nlohmann::json DoctorReportJson(const std::vector<CheckResult>& results) {
  nlohmann::json checks = nlohmann::json::array();
  for (const CheckResult& r : results) {
    nlohmann::json c = {
        {"name", r.name}, {"status", std::string(CheckLevelName(r.level))}, {"detail", r.detail}};
    if (!r.fix.empty()) c["fix"] = r.fix;
    checks.push_back(std::move(c));
  }
  return {{"ok", !AnyFailed(results)}, {"checks", std::move(checks)}};
}

}  // namespace zsnap::plugin
