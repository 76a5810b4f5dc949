// The chart of `zsnap bench`: a hand-written SVG (no library, no script, renders in any
// browser and on GitHub) of time-to-ready per image x codec, native and zsnap side by side.
// Each bar is the median time to ready, split into the pull (dark) and the container start
// (light); a whisker spans min-max over reps; the zsnap/native ratio sits beside zsnap's bar.
//
// Pure function; thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "plugin/bench_report.h"

namespace zsnap::plugin {

// `title` and `subtitle` (e.g. the machine) are escaped for XML.
std::string RenderSvg(const std::vector<BenchComparison>& comparisons, absl::string_view title,
                      absl::string_view subtitle);

// "&<>\"'" escaped for XML text and attributes. Exposed for tests.
std::string XmlEscape(absl::string_view text);

// A "nice" axis step (1, 2 or 5 x 10^k) giving at most `max_ticks` ticks up to `max_value`.
double NiceStep(double max_value, int max_ticks);

}  // namespace zsnap::plugin
