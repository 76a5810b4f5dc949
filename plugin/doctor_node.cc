// `zsnap doctor` checks of the node itself: overlayfs, xattrs, userxattr.
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "overlay/mounts.h"
#include "plugin/doctor.h"

namespace zsnap::plugin {
namespace {

using UserXattr = overlay::SnapshotterOptions::UserXattr;

std::string FsName(const std::string& path) {
  struct statfs fs;
  if (statfs(path.c_str(), &fs) != 0) return "unknown";
  switch (fs.f_type) {
    case EXT4_SUPER_MAGIC:
      return "ext4";
    case XFS_SUPER_MAGIC:
      return "xfs";
    case BTRFS_SUPER_MAGIC:
      return "btrfs";
    case TMPFS_MAGIC:
      return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC:
      return "overlay";
    default:
      return absl::StrCat("fs type 0x", absl::Hex(fs.f_type));
  }
}

// The directory itself if it exists, else its nearest existing ancestor (doctor creates no
// state root of its own).
std::string NearestExisting(std::string path) {
  std::error_code ec;
  while (!path.empty() && path != "/" && !std::filesystem::is_directory(path, ec)) {
    path = std::filesystem::path(path).parent_path().string();
  }
  return path.empty() ? "/" : path;
}

// A temp dir that removes itself (after unmounting `merged` if still mounted).
class Scratch {
 public:
  explicit Scratch(const std::string& base) {
    std::string templ = base + (base == "/" ? "" : "/") + ".zsnap-doctor-XXXXXX";
    if (mkdtemp(templ.data()) != nullptr) path_ = templ;
    error_ = errno;
  }
  ~Scratch() {
    if (path_.empty()) return;
    umount2((path_ + "/merged").c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  int error() const { return error_; }

 private:
  std::string path_;
  int error_ = 0;
};

CheckResult XattrCheck(const std::string& file, const std::string& name, const std::string& fs,
                       CheckLevel if_missing, const std::string& why, const std::string& fix) {
  const std::string check = absl::StrCat("root/xattr-", absl::StripPrefix(name, "."));
  const std::string attr = absl::StrCat(name, ".zsnap-doctor");
  if (setxattr(file.c_str(), attr.c_str(), "1", 1, 0) == 0) {
    char buf[4];
    if (getxattr(file.c_str(), attr.c_str(), buf, sizeof(buf)) == 1) {
      return {check, CheckLevel::kOk, absl::StrCat(name, ".* xattrs work on ", fs), ""};
    }
  }
  return {check, if_missing,
          absl::StrCat("cannot set a ", name, ".* xattr on ", fs, ": ", std::strerror(errno), why),
          fix};
}

}  // namespace

CheckResult CheckOverlayListed(absl::string_view proc_filesystems_text) {
  for (absl::string_view line : absl::StrSplit(proc_filesystems_text, '\n')) {
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (!fields.empty() && fields.back() == "overlay") {
      return {"kernel/overlayfs", CheckLevel::kOk, "overlay is in /proc/filesystems", ""};
    }
  }
  return {"kernel/overlayfs", CheckLevel::kFail, "overlay is not in /proc/filesystems",
          "modprobe overlay (and add 'overlay' to /etc/modules-load.d/zsnap.conf); the kernel "
          "needs CONFIG_OVERLAY_FS"};
}

std::vector<CheckResult> CheckRootFilesystem(const std::string& root, bool userxattr_needed) {
  std::vector<CheckResult> out;
  const std::string base = NearestExisting(root);
  const std::string fs = absl::StrCat(FsName(base), " (", base, ")");
  Scratch scratch(base);
  if (scratch.path().empty()) {
    const std::string why =
        absl::StrCat("cannot create a temp dir in ", base, ": ", std::strerror(scratch.error()));
    out.push_back({"root/overlay-mount", CheckLevel::kFail, why,
                   "run zsnap doctor as root; the root directory must be writable"});
    return out;
  }
  const std::string d = scratch.path();
  for (const char* sub : {"/lower", "/upper", "/work", "/merged"}) mkdir((d + sub).c_str(), 0755);
  std::ofstream(d + "/lower/probe") << "zsnap";

  std::string options =
      absl::StrCat("lowerdir=", d, "/lower,upperdir=", d, "/upper,workdir=", d, "/work");
  if (overlay::OverlayHasIndexParam()) options = "index=off," + options;
  if (userxattr_needed) options += ",userxattr";
  if (mount("overlay", (d + "/merged").c_str(), "overlay", 0, options.c_str()) != 0) {
    const int err = errno;
    out.push_back({"root/overlay-mount", CheckLevel::kFail,
                   absl::StrCat("overlay mount on ", fs, " failed: ", std::strerror(err)),
                   err == EPERM ? "run zsnap doctor (and zsnap) as root (CAP_SYS_ADMIN)"
                                : "put zsnap's root on ext4 or xfs (d_type/ftype=1); overlay "
                                  "cannot use this filesystem as upper layer"});
  } else {
    std::ofstream(d + "/merged/upper-write") << "x";
    const bool wrote = std::filesystem::exists(d + "/upper/upper-write");
    const bool read_lower = std::filesystem::exists(d + "/merged/probe");
    umount2((d + "/merged").c_str(), 0);
    if (wrote && read_lower) {
      out.push_back(
          {"root/overlay-mount", CheckLevel::kOk, absl::StrCat("overlay mount works on ", fs), ""});
    } else {
      out.push_back({"root/overlay-mount", CheckLevel::kFail,
                     absl::StrCat("overlay mounted on ", fs, " but did not behave (lower visible: ",
                                  read_lower, ", upper written: ", wrote, ")"),
                     "check dmesg for overlayfs errors"});
    }
  }

  const std::string file = d + "/lower/probe";
  out.push_back(XattrCheck(
      file, "trusted", fs, userxattr_needed ? CheckLevel::kWarn : CheckLevel::kFail,
      userxattr_needed ? " (fine: in a user namespace overlay uses user.* xattrs)"
                       : "; overlayfs keeps opaque directories and redirects in trusted.* xattrs",
      userxattr_needed ? "" : "run as root on ext4/xfs (tmpfs before 6.6 lacks them)"));
  out.push_back(XattrCheck(
      file, "user", fs, userxattr_needed ? CheckLevel::kFail : CheckLevel::kWarn,
      userxattr_needed ? "; needed with userxattr" : " (only needed with userxattr)",
      userxattr_needed ? "use a filesystem with user.* xattrs (ext4, xfs) for zsnap's root" : ""));
  return out;
}

CheckResult CheckUserxattr(UserXattr mode, bool needed) {
  const std::string name = "userxattr";
  if (mode == UserXattr::kAuto) {
    return {name, CheckLevel::kOk,
            needed ? "in a user namespace: overlay mounts get 'userxattr' (config: auto)"
                   : "not in a user namespace: overlay mounts use trusted.* xattrs (config: auto)",
            ""};
  }
  if (mode == UserXattr::kOff && needed) {
    return {name, CheckLevel::kFail,
            "zsnap runs in a user namespace but its config says userxattr = \"off\": overlay "
            "mounts will fail",
            "set userxattr = \"auto\" in zsnap's config.toml"};
  }
  if (mode == UserXattr::kOn && !needed) {
    return {name, CheckLevel::kWarn,
            "userxattr = \"on\" outside a user namespace: snapshots are not interchangeable with "
            "containerd's own overlayfs snapshotter",
            "set userxattr = \"auto\" unless this is deliberate"};
  }
  return {
      name, CheckLevel::kOk,
      absl::StrCat("userxattr = \"", mode == UserXattr::kOn ? "on" : "off", "\" matches this node"),
      ""};
}

}  // namespace zsnap::plugin
