// Process-wide logging: spdlog's default logger writing to stderr (journald picks it up),
// as text or as JSON with one object per line, at a configured level.
//
// Structured events: LogEvent(level, "prepare", {{"key", k}, ...}) renders
//   text: `2024-05-01T10:00:00.123456Z info  prepare key=k parent="" code=OK`
//   json: {"time":"...","level":"info","msg":"prepare","key":"k","parent":"","code":"OK"}
// Plain spdlog calls from other modules still work: in JSON mode their text becomes "msg".
//
// Messages carry attacker-chosen bytes (tar names, registry error messages, image refs), so
// the sink neutralises them whoever logged them: in text mode every control character
// (C0 incl. \n \r ESC, DEL, C1) and every byte that is not valid UTF-8 is written as an
// escape (\n, \r, \t, \xNN) and one call is always one line; in JSON mode nlohmann escapes
// controls and replaces invalid UTF-8 with U+FFFD, so a line is always one valid object.
//
// Thread safety: SetupLogging() is called once at startup before other threads log;
// LogEvent and spdlog calls are then safe from any thread (the logger is synchronous and
// its sink is mutex-protected; the JSON formatter runs on the logging thread).
#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "spdlog/common.h"

namespace zsnap::plugin {

enum class LogFormat { kText, kJson };

absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(absl::string_view name);
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);
absl::string_view LogFormatName(LogFormat format);

struct LogOptions {
  spdlog::level::level_enum level = spdlog::level::info;
  LogFormat format = LogFormat::kText;
};

// Replaces spdlog's default logger with a stderr logger configured by `options`.
void SetupLogging(const LogOptions& options);

using LogField = std::pair<absl::string_view, absl::string_view>;

// One structured log line: an event name and key/value fields, in the configured format.
void LogEvent(spdlog::level::level_enum level, absl::string_view event,
              absl::Span<const LogField> fields);

// Text rendering of one field value: bare when it is a simple token, else double-quoted
// with C escapes, so a line splits back into key=value pairs unambiguously.
std::string QuoteLogValue(absl::string_view value);

}  // namespace zsnap::plugin
