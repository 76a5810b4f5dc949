#include "plugin/report_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "overlay/status_util.h"
#include "plugin/file_util.h"
#include "spdlog/spdlog.h"

namespace zsnap::plugin {
namespace {

constexpr absl::string_view kJson = ".json";
constexpr absl::string_view kCorrupt = ".corrupt";
constexpr absl::string_view kTmpPrefix = ".tmp.";
constexpr size_t kStampDigits = 15;
constexpr int kMaxSameStamp = 1000;

// "<15 digits>-<3 digits>.json": the only names the store reads, prunes or quarantines.
bool IsReportName(std::string_view name) {
  if (name.size() != kStampDigits + 1 + 3 + kJson.size() ||
      !name.ends_with(std::string_view(kJson.data(), kJson.size()))) {
    return false;
  }
  for (size_t i = 0; i < kStampDigits + 4; ++i) {
    const bool want_dash = i == kStampDigits;
    if (want_dash ? name[i] != '-' : !absl::ascii_isdigit(static_cast<unsigned char>(name[i]))) {
      return false;
    }
  }
  return true;
}

bool IsCorruptName(std::string_view name) {
  const std::string_view suffix(kCorrupt.data(), kCorrupt.size());
  return name.ends_with(suffix) && IsReportName(name.substr(0, name.size() - suffix.size()));
}

// Entry names of `dir` accepted by `keep`, sorted ascending (oldest first).
absl::StatusOr<std::vector<std::string>> ListNames(const std::string& dir,
                                                   bool (*keep)(std::string_view)) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return overlay::ErrnoStatus("opendir", dir, errno);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = readdir(d)) {
    if (keep(e->d_name)) names.emplace_back(e->d_name);
  }
  const int err = errno;
  closedir(d);
  if (err != 0) return overlay::ErrnoStatus("readdir", dir, err);
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<unpack::ImageRecord> ParseReport(const std::string& path) {
  absl::StatusOr<std::string> text =
      ReadBoundedFile(path, kMaxReportBytes, /*follow_symlinks=*/false);
  if (!text.ok()) return text.status();
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::DataLossError(absl::StrCat(path, ": not valid JSON"));
  absl::StatusOr<unpack::ImageRecord> record = unpack::ImageRecordFromJson(j);
  if (!record.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": ", record.status().message()));
  }
  return record;
}

absl::Status WriteAll(int fd, const std::string& path, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return overlay::ErrnoStatus("write", path, errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return overlay::ErrnoStatus("open", dir, errno);
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return overlay::ErrnoStatus("fsync", dir, err);
  return absl::OkStatus();
}

absl::Status MakeDir(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(dir, " exists and is not a directory"));
  }
  if (errno != ENOENT) return overlay::ErrnoStatus("stat", dir, errno);
  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    if (absl::Status s = MakeDir(dir.substr(0, slash)); !s.ok()) return s;
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return overlay::ErrnoStatus("mkdir", dir, errno);
  }
  return absl::OkStatus();
}

// Removes the oldest of `names` (sorted ascending) in `dir` beyond `keep`.
absl::Status RemoveOldest(const std::string& dir, const std::vector<std::string>& names,
                          size_t keep) {
  absl::Status first;
  for (size_t i = 0; i + keep < names.size(); ++i) {
    const std::string path = absl::StrCat(dir, "/", names[i]);
    if (unlink(path.c_str()) != 0 && errno != ENOENT && first.ok()) {
      first = overlay::ErrnoStatus("remove old report", path, errno);
    }
  }
  return first;
}

}  // namespace

std::string ReportsDir(const std::string& root) { return absl::StrCat(root, "/reports"); }

absl::StatusOr<std::unique_ptr<ReportStore>> ReportStore::Open(const std::string& dir, int keep) {
  if (keep < 1) return absl::InvalidArgumentError("a report store keeps at least one report");
  if (absl::Status s = MakeDir(dir); !s.ok()) return s;

  absl::StatusOr<std::vector<std::string>> tmps = ListNames(dir, [](std::string_view n) {
    return n.starts_with(std::string_view(kTmpPrefix.data(), kTmpPrefix.size()));
  });
  if (!tmps.ok()) return tmps.status();
  for (const std::string& name : *tmps) {
    const std::string path = absl::StrCat(dir, "/", name);
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("cannot remove leftover temporary report {}: {}", path, std::strerror(errno));
    }
  }

  absl::StatusOr<std::vector<std::string>> names = ListNames(dir, IsReportName);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    const std::string path = absl::StrCat(dir, "/", name);
    absl::StatusOr<unpack::ImageRecord> record = ParseReport(path);
    if (record.ok() || absl::IsNotFound(record.status())) continue;
    const std::string aside = absl::StrCat(path, kCorrupt);
    spdlog::warn("unreadable pull report {} moved to {}: {}", path, aside,
                 std::string(record.status().message()));
    if (rename(path.c_str(), aside.c_str()) != 0) {
      return overlay::ErrnoStatus("quarantine corrupt report", path, errno);
    }
  }
  absl::StatusOr<std::vector<std::string>> corrupt = ListNames(dir, IsCorruptName);
  if (!corrupt.ok()) return corrupt.status();
  if (absl::Status s = RemoveOldest(dir, *corrupt, kKeepCorrupt); !s.ok()) return s;

  std::unique_ptr<ReportStore> store(new ReportStore(dir, keep));
  {
    absl::MutexLock lock(&store->mu_);
    if (absl::Status s = store->Prune(); !s.ok()) return s;
  }
  return store;
}

absl::Status ReportStore::Append(const unpack::ImageRecord& record) {
  const std::string text =
      unpack::ToJson(record).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  absl::MutexLock lock(&mu_);
  const std::string tmp = absl::StrCat(dir_, "/", kTmpPrefix, getpid(), ".", tmp_seq_++);
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return overlay::ErrnoStatus("create", tmp, errno);
  absl::Status written = WriteAll(fd, tmp, text);
  if (written.ok() && fsync(fd) != 0) written = overlay::ErrnoStatus("fsync", tmp, errno);
  if (close(fd) != 0 && written.ok()) written = overlay::ErrnoStatus("close", tmp, errno);
  if (!written.ok()) {
    unlink(tmp.c_str());
    return written;
  }

  const int64_t stamp = std::max<int64_t>(0, record.started_unix_ms);
  absl::Status placed = absl::AlreadyExistsError(
      absl::StrCat("more than ", kMaxSameStamp, " reports started at ", stamp, " ms in ", dir_));
  for (int n = 0; n < kMaxSameStamp; ++n) {
    const std::string path = absl::StrFormat("%s/%015d-%03d%s", dir_, stamp, n, kJson);
    if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) {
      placed = absl::OkStatus();
      break;
    }
    if (errno == EEXIST) continue;
    placed = overlay::ErrnoStatus("rename report into place", path, errno);
    break;
  }
  if (!placed.ok()) {
    unlink(tmp.c_str());
    return placed;
  }
  if (absl::Status s = FsyncDir(dir_); !s.ok()) return s;
  return Prune();
}

absl::Status ReportStore::Prune() {
  absl::StatusOr<std::vector<std::string>> names = ListNames(dir_, IsReportName);
  if (!names.ok()) return names.status();
  return RemoveOldest(dir_, *names, static_cast<size_t>(keep_));
}

absl::StatusOr<LoadedReports> ReadReports(const std::string& dir, size_t limit) {
  LoadedReports loaded;
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 && errno == ENOENT) return loaded;
  absl::StatusOr<std::vector<std::string>> names = ListNames(dir, IsReportName);
  if (!names.ok()) return names.status();
  for (auto it = names->rbegin(); it != names->rend(); ++it) {
    if (limit != 0 && loaded.records.size() >= limit) break;
    absl::StatusOr<unpack::ImageRecord> record = ParseReport(absl::StrCat(dir, "/", *it));
    if (record.ok()) {
      loaded.records.push_back(*std::move(record));
    } else if (!absl::IsNotFound(record.status())) {  // NotFound: pruned meanwhile
      loaded.warnings.emplace_back(record.status().message());
    }
  }
  return loaded;
}

}  // namespace zsnap::plugin
