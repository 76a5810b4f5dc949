#include "plugin/pull_recorder.h"

#include "plugin/logging.h"
#include "plugin/pull_stats.h"
#include "spdlog/spdlog.h"

namespace zsnap::plugin {

PullRecorder::PullRecorder(Metrics& metrics, ReportStore* store)
    : metrics_(metrics), store_(store) {
  if (store_ != nullptr) {
    writer_ = std::jthread([this](std::stop_token stop) { WriteLoop(stop); });
  }
}

PullRecorder::~PullRecorder() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

void PullRecorder::OnLayer(const unpack::LayerRecord& record) {
  metrics_.RecordLayer(record);
  const auto level = record.outcome == "ok" ? spdlog::level::info : spdlog::level::warn;
  spdlog::log(level, "pull_layer {}", unpack::ToLogLine(record));
}

void PullRecorder::OnImage(const unpack::ImageRecord& record) {
  metrics_.RecordImage(record);
  const auto level = record.outcome == "ok" ? spdlog::level::info : spdlog::level::warn;
  spdlog::log(level, "pull_image {}", unpack::ToLogLine(record));
  if (absl::Status s = CheckImageRecord(record); !s.ok()) {
    spdlog::warn("pull_image inconsistent timing record of {}: {}", record.image,
                 std::string(s.message()));
  }
  if (store_ == nullptr) return;
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= kMaxQueuedReports) {
    metrics_.RecordReportDropped();
    spdlog::warn("pull report of {} dropped: {} reports are waiting to be written", record.image,
                 queue_.size());
    return;
  }
  queue_.push_back(record);
  ++queued_;
}

void PullRecorder::OnFallback(std::string_view reason, std::string_view detail) {
  metrics_.RecordFallback(reason);
  LogEvent(
      spdlog::level::warn, "pull_fallback",
      {{"reason", {reason.data(), reason.size()}}, {"detail", {detail.data(), detail.size()}}});
}

void PullRecorder::OnInFlight(int delta) { metrics_.AddInFlight(delta); }

void PullRecorder::Flush() {
  absl::MutexLock lock(&mu_);
  struct Target {
    PullRecorder* self;
    uint64_t count;
  } target{this, queued_};
  mu_.Await(absl::Condition(
      +[](Target* t) ABSL_NO_THREAD_SAFETY_ANALYSIS { return t->self->written_ >= t->count; },
      &target));
}

void PullRecorder::WriteLoop(std::stop_token) {
  for (;;) {
    unpack::ImageRecord record;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](PullRecorder* self)
               ABSL_NO_THREAD_SAFETY_ANALYSIS { return !self->queue_.empty() || self->stopping_; },
          this));
      if (queue_.empty()) return;  // stopping, and everything is written
      record = std::move(queue_.front());
      queue_.pop_front();
    }
    // No lock held across the disk write.
    if (absl::Status s = store_->Append(record); !s.ok()) {
      metrics_.RecordReportDropped();
      spdlog::warn("cannot write the pull report of {}: {}", record.image,
                   std::string(s.message()));
    }
    absl::MutexLock lock(&mu_);
    ++written_;
  }
}

}  // namespace zsnap::plugin
