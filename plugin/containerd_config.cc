#include "plugin/containerd_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <initializer_list>
#include <sstream>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "overlay/status_util.h"
#include "plugin/file_util.h"
#include "toml++/toml.h"

namespace zsnap::plugin {
namespace {

constexpr char kCriV2[] = "io.containerd.grpc.v1.cri";
constexpr char kCriImagesV3[] = "io.containerd.cri.v1.images";
constexpr char kTransferV3[] = "io.containerd.transfer.v1.local";
// containerd's built-in default snapshotter, kept in unpack_config when we create the list.
constexpr char kOverlayfs[] = "overlayfs";
constexpr size_t kMaxConfigBytes = 4 << 20;

// Debian's Abseil has its own string_view; toml++ speaks std::string_view.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool Is2x(ContainerdSeries s) {
  return s == ContainerdSeries::k2_0 || s == ContainerdSeries::k2_1Plus;
}

// A TOML basic ("double-quoted") string, escaped by toml++.
std::string Quote(const std::string& s) {
  std::ostringstream out;
  const toml::value<std::string> value(s);
  out << toml::toml_formatter(value, toml::format_flags::none);
  return out.str();
}

// A key path for messages: segments containing dots are quoted, as in a TOML header.
std::string PathName(std::initializer_list<std::string_view> path) {
  std::vector<std::string> parts;
  for (std::string_view p : path) {
    parts.push_back(absl::StrContains(A(p), '.') ? absl::StrCat("\"", A(p), "\"") : std::string(p));
  }
  return absl::StrJoin(parts, ".");
}

std::string Describe(const toml::node& node) {
  std::ostringstream out;
  if (node.is_table() || node.is_array()) return "a table or array";
  node.visit([&out](const auto& v) { out << v; });
  return out.str();
}

// Sets keys in a parsed document, creating the tables on the way, recording every change.
class Merger {
 public:
  explicit Merger(toml::table& doc, const std::string& source) : doc_(doc), source_(source) {}

  // The table at `path`, created if missing; nullptr (and an error) if a non-table is in the way.
  toml::table* Table(std::initializer_list<std::string_view> path) {
    toml::table* t = &doc_;
    std::vector<std::string> walked;
    for (std::string_view key : path) {
      walked.emplace_back(key);
      toml::node* next = t->get(key);
      if (next == nullptr) {
        t = t->emplace<toml::table>(key).first->second.as_table();
        continue;
      }
      if (!next->is_table()) {
        errors_.push_back(absl::StrCat(source_, ": ", absl::StrJoin(walked, "."),
                                       " is not a table, cannot add the zsnap keys below it"));
        return nullptr;
      }
      t = next->as_table();
    }
    return t;
  }

  template <typename T>
  void Set(std::initializer_list<std::string_view> table_path, std::string_view key, T value) {
    toml::table* t = Table(table_path);
    if (t == nullptr) return;
    std::vector<std::string_view> full(table_path);
    full.push_back(key);
    std::vector<std::string> quoted;
    for (std::string_view p : full) {
      quoted.push_back(absl::StrContains(A(p), '.') ? absl::StrCat("\"", A(p), "\"")
                                                    : std::string(p));
    }
    const std::string name = absl::StrJoin(quoted, ".");
    if (const toml::node* old = t->get(key)) {
      if (const auto* same = old->as<T>(); same != nullptr && same->get() == value) return;
      changes_.push_back(
          absl::StrCat(name, ": ", Describe(*old), " -> ", Describe(toml::value<T>(value))));
    } else {
      changes_.push_back(absl::StrCat(name, " = ", Describe(toml::value<T>(value))));
    }
    t->insert_or_assign(key, value);
  }

  // Appends {platform, snapshotter} to the array of tables `path` unless an entry for that
  // snapshotter and platform exists. A missing array starts with containerd's default entry.
  void EnsureUnpackEntry(std::initializer_list<std::string_view> table_path, std::string_view key,
                         const std::string& platform, const std::string& snapshotter) {
    toml::table* t = Table(table_path);
    if (t == nullptr) return;
    const std::string name = absl::StrCat(PathName(table_path), ".", A(key));
    toml::node* node = t->get(key);
    if (node == nullptr) {
      toml::array fresh;
      fresh.push_back(toml::table{{"platform", platform}, {"snapshotter", kOverlayfs}});
      changes_.push_back(absl::StrCat(name, " += {platform = \"", platform, "\", snapshotter = \"",
                                      kOverlayfs, "\"} (containerd's default, kept)"));
      node = &t->insert_or_assign(key, std::move(fresh)).first->second;
    }
    toml::array* entries = node->as_array();
    if (entries == nullptr) {
      errors_.push_back(absl::StrCat(source_, ": ", name, " is not an array of tables"));
      return;
    }
    for (const toml::node& e : *entries) {
      const toml::table* entry = e.as_table();
      if (entry == nullptr) {
        errors_.push_back(absl::StrCat(source_, ": ", name, " is not an array of tables"));
        return;
      }
      if (entry->get_as<std::string>("snapshotter") != nullptr &&
          entry->get_as<std::string>("snapshotter")->get() == snapshotter &&
          entry->get_as<std::string>("platform") != nullptr &&
          entry->get_as<std::string>("platform")->get() == platform) {
        return;
      }
    }
    entries->push_back(toml::table{{"platform", platform}, {"snapshotter", snapshotter}});
    changes_.push_back(absl::StrCat(name, " += {platform = \"", platform, "\", snapshotter = \"",
                                    snapshotter, "\"}"));
  }

  const std::vector<std::string>& changes() const { return changes_; }
  absl::Status Result() const {
    if (errors_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrJoin(errors_, "; "));
  }

 private:
  toml::table& doc_;
  const std::string& source_;
  std::vector<std::string> changes_;
  std::vector<std::string> errors_;
};

void ApplySnippet(Merger& m, const ContainerdSnippetOptions& o, const std::string& platform) {
  m.Set<std::string>({"proxy_plugins", o.name}, "type", "snapshot");
  m.Set<std::string>({"proxy_plugins", o.name}, "address", o.address);
  m.Set<std::string>({"proxy_plugins", o.name, "exports"}, "root", o.root);
  if (!Is2x(o.series)) {
    m.Set<std::string>({"plugins", kCriV2, "containerd"}, "snapshotter", o.name);
    m.Set<bool>({"plugins", kCriV2, "containerd"}, "disable_snapshot_annotations", false);
    return;
  }
  m.Set<std::string>({"plugins", kCriImagesV3}, "snapshotter", o.name);
  m.Set<bool>({"plugins", kCriImagesV3}, "disable_snapshot_annotations", false);
  if (o.series == ContainerdSeries::k2_1Plus) {
    m.Set<std::string>({"proxy_plugins", o.name, "exports"}, "enable_remote_snapshot_annotations",
                       "true");
    m.EnsureUnpackEntry({"plugins", kTransferV3}, "unpack_config", platform, o.name);
  }
}

absl::StatusOr<toml::table> ParseToml(absl::string_view text, const std::string& source) {
  try {
    return toml::parse(std::string_view(text.data(), text.size()), std::string_view(source));
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    return absl::InvalidArgumentError(absl::StrCat(source, ":", begin.line, ":", begin.column, ": ",
                                                   std::string(e.description())));
  }
}

absl::Status CheckVersion(const toml::table& doc, const std::string& source,
                          ContainerdSeries series) {
  const int want = ConfigVersionFor(series);
  const toml::node* node = doc.get("version");
  if (node == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        source,
        " has no 'version' key, so containerd reads it as config version 1, which zsnap "
        "does not edit; containerd ",
        ContainerdSeriesName(series), " wants version = ", want,
        " (convert the file first, or start from `containerd config default`)"));
  }
  const auto* v = node->as_integer();
  if (v == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": 'version' must be an integer"));
  }
  const int64_t have = v->get();
  if (!Is2x(series) && have != 2) {
    return absl::FailedPreconditionError(absl::StrCat(
        source, " is containerd config version ", have, " but --containerd-version ",
        ContainerdSeriesName(series), " needs version 2",
        have > 2 ? " (containerd 1.x rejects versions above 2; is this a containerd 2.x host? "
                   "then use --containerd-version 2.x)"
                 : ""));
  }
  if (Is2x(series) && have != 3 && have != 4) {
    return absl::FailedPreconditionError(absl::StrCat(
        source, " is containerd config version ", have, " but --containerd-version ",
        ContainerdSeriesName(series), " needs version 3 (or 4)",
        have == 2 ? "; containerd 2.x only migrates a version 2 file in memory and the keys "
                    "zsnap sets live elsewhere in version 3: write the migrated file with "
                    "`containerd config migrate > NEW` and merge into that, or, on a "
                    "containerd 1.x host, use --containerd-version 1.7"
                  : ""));
  }
  return absl::OkStatus();
}

// Writes `text` to a new file `path` (O_EXCL) with `mode`/owner, fsynced.
absl::Status WriteNewFile(const std::string& path, absl::string_view text, mode_t mode, uid_t uid,
                          gid_t gid) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
  if (fd < 0) return overlay::ErrnoStatus("create", path, errno);
  absl::Status status;
  if (fchmod(fd, mode & 07777) != 0) status = overlay::ErrnoStatus("chmod", path, errno);
  if (status.ok() && fchown(fd, uid, gid) != 0 && errno != EPERM) {
    status = overlay::ErrnoStatus("chown", path, errno);
  }
  size_t off = 0;
  while (status.ok() && off < text.size()) {
    const ssize_t n = write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = overlay::ErrnoStatus("write", path, errno);
      break;
    }
    off += static_cast<size_t>(n);
  }
  if (status.ok() && fsync(fd) != 0) status = overlay::ErrnoStatus("fsync", path, errno);
  if (close(fd) != 0 && status.ok()) status = overlay::ErrnoStatus("close", path, errno);
  if (!status.ok()) unlink(path.c_str());
  return status;
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::StatusOr<ContainerdSeries> ParseContainerdSeries(absl::string_view version) {
  absl::string_view v = absl::StripAsciiWhitespace(version);
  if (absl::StartsWith(v, "v")) v.remove_prefix(1);
  if (v == "2.x" || v == "2") return ContainerdSeries::k2_1Plus;
  const std::vector<absl::string_view> parts = absl::StrSplit(v, absl::MaxSplits('.', 2));
  int major = 0, minor = 0;
  if (parts.size() < 2 || !absl::SimpleAtoi(parts[0], &major)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown containerd version '", version,
                                                   "' (want 1.6, 1.7, 2.0, 2.1 or 2.x)"));
  }
  // "2.1", "2.1.9", "1.6.20~ds1": the minor is the leading digits of the second part.
  absl::string_view minor_text = parts[1];
  size_t digits = 0;
  while (digits < minor_text.size() && absl::ascii_isdigit(minor_text[digits])) ++digits;
  if (digits == 0 || !absl::SimpleAtoi(minor_text.substr(0, digits), &minor)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown containerd version '", version,
                                                   "' (want 1.6, 1.7, 2.0, 2.1 or 2.x)"));
  }
  if (major == 1 && minor == 6) return ContainerdSeries::k1_6;
  if (major == 1 && minor == 7) return ContainerdSeries::k1_7;
  if (major == 2 && minor == 0) return ContainerdSeries::k2_0;
  if (major == 2) return ContainerdSeries::k2_1Plus;
  return absl::InvalidArgumentError(
      absl::StrCat("containerd ", version,
                   " is not supported: zsnap knows the configuration of 1.6, 1.7 and 2.x"));
}

absl::string_view ContainerdSeriesName(ContainerdSeries series) {
  switch (series) {
    case ContainerdSeries::k1_6:
      return "1.6";
    case ContainerdSeries::k1_7:
      return "1.7";
    case ContainerdSeries::k2_0:
      return "2.0";
    case ContainerdSeries::k2_1Plus:
      break;
  }
  return "2.1+";
}

int ConfigVersionFor(ContainerdSeries series) { return Is2x(series) ? 3 : 2; }

std::string HostPlatform() {
  struct utsname uts;
  std::string machine = uname(&uts) == 0 ? uts.machine : "unknown";
  if (machine == "x86_64") return "linux/amd64";
  if (machine == "aarch64" || machine == "arm64") return "linux/arm64";
  if (machine == "armv7l") return "linux/arm/v7";
  if (machine == "armv6l") return "linux/arm/v6";
  if (machine == "i386" || machine == "i686") return "linux/386";
  return absl::StrCat("linux/", machine);  // ppc64le, s390x, riscv64 are spelled alike
}

std::string RenderContainerdSnippet(const ContainerdSnippetOptions& o) {
  const std::string platform = o.platform.empty() ? HostPlatform() : o.platform;
  const std::string name = o.name;
  std::string out;
  if (!Is2x(o.series)) {
    absl::StrAppend(
        &out, "# containerd 1.6 / 1.7 (config version 2): register ", name,
        " and make CRI use it.\n", "version = 2\n\n", "[proxy_plugins]\n", "  [proxy_plugins.",
        name, "]\n", "    type = \"snapshot\"\n", "    address = ", Quote(o.address), "\n",
        "  # honoured from containerd 1.6.32 / 1.7.16: CRI's image filesystem stats\n",
        "  [proxy_plugins.", name, ".exports]\n", "    root = ", Quote(o.root), "\n\n",
        "[plugins.\"", kCriV2, "\".containerd]\n", "  snapshotter = ", Quote(name), "\n",
        "  # default true on Linux; false makes CRI send the cri.* layer labels\n",
        "  disable_snapshot_annotations = false\n");
    return out;
  }
  const bool v21 = o.series == ContainerdSeries::k2_1Plus;
  absl::StrAppend(
      &out, "# containerd ", v21 ? "2.1 and later" : "2.0", " (config version 3): register ", name,
      ", make CRI", v21 ? " and transfer pulls" : "", " use it.\n", "version = 3\n\n",
      "[proxy_plugins.", name, "]\n", "  type = \"snapshot\"\n", "  address = ", Quote(o.address),
      "\n", "  [proxy_plugins.", name, ".exports]\n", "    root = ", Quote(o.root), "\n");
  if (v21) {
    absl::StrAppend(&out,
                    "    # the transfer service adds the CRI image labels for this snapshotter\n",
                    "    enable_remote_snapshot_annotations = \"true\"\n");
  }
  absl::StrAppend(
      &out, "\n[plugins.'", kCriImagesV3, "']\n", "  snapshotter = ", Quote(name), "\n",
      "  # default true; false makes CRI send the cri.* layer labels",
      v21 ? " (and pull\n  # through its local path rather than the transfer service)" : "", "\n",
      "  disable_snapshot_annotations = false\n");
  if (v21) {
    absl::StrAppend(
        &out,
        "\n# ctr and CRI transfer pulls unpack only for snapshotters listed here. Listing any\n"
        "# replaces containerd's default (this platform -> overlayfs), so that one is kept.\n",
        "[[plugins.'", kTransferV3, "'.unpack_config]]\n", "  platform = ", Quote(platform), "\n",
        "  snapshotter = \"", kOverlayfs, "\"\n", "[[plugins.'", kTransferV3, "'.unpack_config]]\n",
        "  platform = ", Quote(platform), "\n", "  snapshotter = ", Quote(name), "\n");
  }
  return out;
}

absl::StatusOr<int> ContainerdConfigVersion(absl::string_view text, const std::string& source) {
  absl::StatusOr<toml::table> doc = ParseToml(text, source);
  if (!doc.ok()) return doc.status();
  const toml::node* node = doc->get("version");
  if (node == nullptr) return 1;
  if (const auto* v = node->as_integer()) return static_cast<int>(v->get());
  return absl::InvalidArgumentError(absl::StrCat(source, ": 'version' must be an integer"));
}

absl::StatusOr<ContainerdMerge> MergeContainerdConfig(absl::string_view existing,
                                                      const std::string& source,
                                                      const ContainerdSnippetOptions& options) {
  absl::StatusOr<toml::table> doc = ParseToml(existing, source);
  if (!doc.ok()) return doc.status();
  const std::string platform = options.platform.empty() ? HostPlatform() : options.platform;

  ContainerdMerge merge;
  if (doc->empty()) {
    // Nothing but comments: keep them and append the commented snippet.
    toml::table fresh;
    fresh.insert("version", ConfigVersionFor(options.series));
    Merger m(fresh, source);
    ApplySnippet(m, options, platform);
    merge.changes = {absl::StrCat("version = ", ConfigVersionFor(options.series))};
    merge.changes.insert(merge.changes.end(), m.changes().begin(), m.changes().end());
    merge.text = std::string(existing);
    if (!merge.text.empty() && merge.text.back() != '\n') merge.text += '\n';
    absl::StrAppend(&merge.text, RenderContainerdSnippet(options));
    return merge;
  }
  if (absl::Status s = CheckVersion(*doc, source, options.series); !s.ok()) return s;
  Merger m(*doc, source);
  ApplySnippet(m, options, platform);
  if (absl::Status s = m.Result(); !s.ok()) return s;
  merge.changes = m.changes();
  if (!merge.changed()) {
    merge.text = std::string(existing);
    return merge;
  }
  std::ostringstream out;
  out << "# Merged by `zsnap config containerd` for containerd "
      << ContainerdSeriesName(options.series)
      << "; comments of the previous file are in its backup.\n"
      << *doc << "\n";
  merge.text = out.str();
  return merge;
}

absl::StatusOr<ContainerdMergeFileResult> MergeContainerdConfigFile(
    const std::string& given_path, const ContainerdSnippetOptions& options, absl::Time now) {
  ContainerdMergeFileResult result;
  // A symlinked config (e.g. to a file a node bootstrap manages) is edited where it points,
  // so the link survives the rename below.
  std::string path = given_path;
  if (char* real = realpath(given_path.c_str(), nullptr)) {
    path = real;
    free(real);
  }
  struct stat st;
  std::string existing;
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return overlay::ErrnoStatus("stat", path, errno);
    result.created = true;
    st.st_mode = 0644;
    st.st_uid = getuid();
    st.st_gid = getgid();
  } else {
    if (!S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
    }
    absl::StatusOr<std::string> text = ReadBoundedFile(path, kMaxConfigBytes);
    if (!text.ok()) return text.status();
    existing = *std::move(text);
  }

  absl::StatusOr<ContainerdMerge> merge = MergeContainerdConfig(existing, path, options);
  if (!merge.ok()) return merge.status();
  result.changes = merge->changes;
  if (!merge->changed()) return result;

  if (!result.created) {
    const std::string stamp = absl::FormatTime("%Y%m%dT%H%M%SZ", now, absl::UTCTimeZone());
    std::string backup = absl::StrCat(path, ".bak-", stamp);
    for (int i = 1;; ++i) {
      absl::Status s = WriteNewFile(backup, existing, st.st_mode, st.st_uid, st.st_gid);
      if (s.ok()) break;
      if (!absl::IsAlreadyExists(s) || i > 100) return s;
      backup = absl::StrCat(path, ".bak-", stamp, ".", i);
    }
    result.backup = backup;
  }

  const std::string tmp = absl::StrCat(path, ".zsnap-tmp-", getpid());
  unlink(tmp.c_str());  // a leftover of an earlier crashed run of this pid
  if (absl::Status s = WriteNewFile(tmp, merge->text, st.st_mode, st.st_uid, st.st_gid); !s.ok()) {
    return s;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return overlay::ErrnoStatus("rename", tmp, err);
  }
  const std::string dir = DirName(path);
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return result;
}

}  // namespace zsnap::plugin
