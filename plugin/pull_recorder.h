// PullRecorder: the daemon's unpack::PullObserver. Each record of the remote path becomes one
// structured log line (unpack::ToLogLine), Prometheus observations (Metrics) and, for an image
// pull, a report in the history (ReportStore), written by the recorder's own thread so that
// the puller's workers never wait on a disk: reports queue (at most kMaxQueuedReports; beyond
// that they are dropped, counted and logged) and the writer drains the queue.
//
// An image record whose numbers do not add up (CheckImageRecord) is still recorded, with a
// warning naming what is off: the timing code has a bug worth seeing.
//
// Ownership: borrows `metrics` and `store` (null: no history); both outlive the recorder. The
// puller that calls the recorder must be stopped before the recorder is destroyed.
// Thread safety: the PullObserver methods and Flush() may be called concurrently from any
// thread. The destructor writes what is still queued, then joins the writer.
#pragma once

#include <cstddef>
#include <deque>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "plugin/metrics.h"
#include "plugin/report_store.h"
#include "unpack/pull_report.h"

namespace zsnap::plugin {

inline constexpr size_t kMaxQueuedReports = 64;

class PullRecorder final : public unpack::PullObserver {
 public:
  PullRecorder(Metrics& metrics, ReportStore* store);
  ~PullRecorder() override;
  PullRecorder(const PullRecorder&) = delete;
  PullRecorder& operator=(const PullRecorder&) = delete;

  void OnLayer(const unpack::LayerRecord& record) override;
  void OnImage(const unpack::ImageRecord& record) override;
  void OnFallback(std::string_view reason, std::string_view detail) override;
  void OnInFlight(int delta) override;

  // Blocks until every report queued before the call has been written (or failed to be).
  void Flush();

 private:
  void WriteLoop(std::stop_token stop);

  Metrics& metrics_;
  ReportStore* const store_;
  absl::Mutex mu_;
  std::deque<unpack::ImageRecord> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_ ABSL_GUARDED_BY(mu_) = 0;   // reports ever queued
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;  // of those, done (written or failed)
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::jthread writer_;  // last: starts after, and is joined before, the members above go
};

}  // namespace zsnap::plugin
