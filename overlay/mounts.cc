#include "overlay/mounts.h"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace zsnap::overlay {

std::string UpperPath(absl::string_view snapshots_dir, int64_t id) {
  return absl::StrCat(snapshots_dir, "/", id, "/fs");
}

std::string WorkPath(absl::string_view snapshots_dir, int64_t id) {
  return absl::StrCat(snapshots_dir, "/", id, "/work");
}

std::vector<Mount> BuildMounts(const MountConfig& config, Kind kind, int64_t id,
                               const std::vector<int64_t>& parent_ids) {
  if (parent_ids.empty()) {
    return {Mount{.type = "bind",
                  .source = UpperPath(config.snapshots_dir, id),
                  .options = {kind == Kind::kView ? "ro" : "rw", "rbind"}}};
  }
  if (kind == Kind::kView && parent_ids.size() == 1) {
    // A read-only view of one layer needs no overlay: bind the layer itself.
    return {Mount{.type = "bind",
                  .source = UpperPath(config.snapshots_dir, parent_ids[0]),
                  .options = {"ro", "rbind"}}};
  }
  std::vector<std::string> options;
  if (config.index_off) options.push_back("index=off");
  if (config.userxattr) options.push_back("userxattr");
  if (kind == Kind::kActive) {
    options.push_back(absl::StrCat("workdir=", WorkPath(config.snapshots_dir, id)));
    options.push_back(absl::StrCat("upperdir=", UpperPath(config.snapshots_dir, id)));
  }
  options.push_back(absl::StrCat(
      "lowerdir=", absl::StrJoin(parent_ids, ":", [&](std::string* out, int64_t parent) {
        out->append(UpperPath(config.snapshots_dir, parent));
      })));
  return {Mount{.type = "overlay", .source = "overlay", .options = std::move(options)}};
}

bool OverlayHasIndexParam(const std::string& param_path) {
  struct stat st;
  return stat(param_path.c_str(), &st) == 0;
}

bool IsIdentityUidMap(absl::string_view uid_map_text) {
  // One line, three numbers; any other range list is a user namespace.
  std::vector<absl::string_view> fields =
      absl::StrSplit(uid_map_text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
  return fields.size() == 3 && fields[0] == "0" && fields[1] == "0" && fields[2] == "4294967295";
}

bool KernelAtLeast5_11(absl::string_view release) {
  std::vector<absl::string_view> parts = absl::StrSplit(release, absl::MaxSplits('.', 2));
  if (parts.size() < 2) return false;
  // The minor part may carry a suffix ("11-rc1"): keep the leading digits.
  const auto leading_number = [](absl::string_view s, int* out) {
    size_t n = 0;
    while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
    return absl::SimpleAtoi(s.substr(0, n), out);
  };
  int major = 0;
  int minor = 0;
  if (!leading_number(parts[0], &major) || !leading_number(parts[1], &minor)) return false;
  return major > 5 || (major == 5 && minor >= 11);
}

bool NeedsUserxattr(const std::string& dir, const UserxattrProbe& probe) {
  std::ifstream uid_map(probe.uid_map_path);
  if (!uid_map) return false;  // no user namespaces at all (or no /proc): the initial namespace
  std::stringstream text;
  text << uid_map.rdbuf();
  if (IsIdentityUidMap(text.str())) return false;

  // The kernel refuses userxattr on tmpfs.
  struct statfs fs;
  if (statfs(dir.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC) return false;

  std::string release = probe.kernel_release;
  if (release.empty()) {
    struct utsname uts;
    if (uname(&uts) != 0) return false;
    release = uts.release;
  }
  return KernelAtLeast5_11(release);
}

}  // namespace zsnap::overlay
