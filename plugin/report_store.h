// ReportStore: the bounded history of image-pull reports, one JSON file per pull
// (unpack::ImageRecord) in a directory, by default <root>/reports/. It outlives the daemon:
// `zsnap stats` reads it (ReadReports) with or without a daemon running.
//
// Layout: <dir>/<started_unix_ms, 15 digits>-<nnn>.json, so names sort by pull start time
// and the oldest is removed first. A file is written under .tmp.<...>, fsynced, renamed into
// place without replacing anything (renameat2 RENAME_NOREPLACE) and the directory fsynced:
// a crash leaves either the whole report or a temporary that the next Open() removes.
// Unparsable reports are renamed <name>.corrupt with a warning (the newest kKeepCorrupt are
// kept for a person to look at), never deleted silently and never fatal.
//
// Thread safety: Append may be called from any thread; appends are serialised by the store.
// ReadReports only reads and tolerates a concurrent writer (a file pruned while being listed
// is skipped).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "unpack/pull_report.h"

namespace zsnap::plugin {

// Reports larger than this are not read back (a report has ~1 KiB per layer).
inline constexpr size_t kMaxReportBytes = 16 << 20;
inline constexpr int kKeepCorrupt = 10;

// "<root>/reports".
std::string ReportsDir(const std::string& root);

class ReportStore {
 public:
  // Creates `dir` (and missing parents, 0700) unless it exists, removes temporaries left by a
  // crash, quarantines unparsable reports and prunes the history to `keep` (>= 1) files.
  static absl::StatusOr<std::unique_ptr<ReportStore>> Open(const std::string& dir, int keep);

  // Writes `record` as a new report, then removes the oldest beyond `keep`.
  absl::Status Append(const unpack::ImageRecord& record);

  const std::string& dir() const { return dir_; }
  int keep() const { return keep_; }

 private:
  ReportStore(std::string dir, int keep) : dir_(std::move(dir)), keep_(keep) {}
  absl::Status Prune() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const int keep_;
  absl::Mutex mu_;
  uint64_t tmp_seq_ ABSL_GUARDED_BY(mu_) = 0;
};

struct LoadedReports {
  std::vector<unpack::ImageRecord> records;  // newest first
  std::vector<std::string> warnings;         // one per report that could not be read
};

// The newest `limit` readable reports in `dir` (0 = all). A missing `dir` is an empty history.
absl::StatusOr<LoadedReports> ReadReports(const std::string& dir, size_t limit);

}  // namespace zsnap::plugin
