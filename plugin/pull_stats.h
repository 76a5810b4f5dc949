// The body of `zsnap stats` and the arithmetic behind it: what the report history
// (report_store.h) says about recent image pulls, as a table or as JSON, and the consistency
// rules a timing record must satisfy (used by the recorder to flag a bad record, and by tests).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "unpack/pull_report.h"

namespace zsnap::plugin {

// Slack for timers read at slightly different instants.
inline constexpr double kTimingSlackS = 0.05;

// One layer's numbers add up: times are finite and >= 0; ttfb <= fetch; the fetch ends
// within the streaming unpack plus its time to first byte (+ 5% + kTimingSlackS: the fetch
// clock starts at the request, the unpack's at about the first byte); each stage's busy time fits
// in the unpack's wall time (write: times its threads, writers run in parallel);
// queue + unpack + commit <= total; a committed layer fetched exactly unpack.bytes_in bytes.
absl::Status CheckLayerRecord(const unpack::LayerRecord& record);
// Every layer passes CheckLayerRecord and fits in the image's wall time; the layer counts
// agree with the layers listed; bytes_in / bytes_out are the sums over the layers.
// FailedPrecondition naming the first rule broken.
absl::Status CheckImageRecord(const unpack::ImageRecord& record);

// Per-image sums over its layers, for the table.
struct PullSummary {
  double queue_s = 0, ttfb_s = 0, fetch_s = 0, decode_s = 0, extract_s = 0, write_s = 0,
         verify_s = 0, commit_s = 0;
  double mbps = 0;  // uncompressed MB (1e6 bytes) per wall second
};
PullSummary Summarize(const unpack::ImageRecord& record);

// An aligned table, newest first as given: time (UTC), image, outcome, layers remote/total,
// bytes in/out, wall seconds, per-stage seconds summed over layers, throughput.
std::string FormatStatsTable(const std::vector<unpack::ImageRecord>& records);
// A JSON array of the records (unpack::ToJson), one element per pull.
std::string FormatStatsJson(const std::vector<unpack::ImageRecord>& records);

// Reads up to `limit` reports from `dir` and prints them to `out` (warnings about unreadable
// reports to `err`). An empty history prints a note, not an error.
absl::Status PrintStats(const std::string& dir, size_t limit, bool json, std::ostream& out,
                        std::ostream& err);

}  // namespace zsnap::plugin
