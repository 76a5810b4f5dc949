#include "plugin/logging.h"

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "spdlog/formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace zsnap::plugin {
namespace {

constexpr char kTimeFormat[] = "%Y-%m-%dT%H:%M:%E6SZ";

LogFormat g_format = LogFormat::kText;

// The fields of the LogEvent call being formatted on this thread. spdlog's synchronous
// logger formats in the caller's thread, so JsonFormatter sees exactly the fields of the
// message it is formatting; plain spdlog calls find it null.
thread_local const nlohmann::ordered_json* tls_fields = nullptr;

std::string Dump(const nlohmann::ordered_json& j) {
  // Labels and keys are caller bytes and may be invalid UTF-8; never throw on them.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json line = nlohmann::ordered_json::object();
    line["time"] = absl::FormatTime(kTimeFormat, absl::FromChrono(msg.time), absl::UTCTimeZone());
    const auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string(level.data(), level.size());
    line["msg"] = std::string(msg.payload.data(), msg.payload.size());
    if (tls_fields != nullptr) {
      for (const auto& [key, value] : tls_fields->items()) {
        // A field never overwrites the envelope.
        line[line.contains(key) ? absl::StrCat("field.", key) : key] = value;
      }
    }
    const std::string text = Dump(line);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

bool IsBareToken(absl::string_view value) {
  if (value.empty()) return false;
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '"' || c == '=' || c == '\\') return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "trace") return spdlog::level::trace;
  if (lower == "debug") return spdlog::level::debug;
  if (lower == "info") return spdlog::level::info;
  if (lower == "warn" || lower == "warning") return spdlog::level::warn;
  if (lower == "error") return spdlog::level::err;
  if (lower == "critical") return spdlog::level::critical;
  if (lower == "off") return spdlog::level::off;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown log level \"", name, "\" (want trace, debug, info, warn, error, critical, off)"));
}

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "text") return LogFormat::kText;
  if (lower == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log format \"", name, "\" (want text or json)"));
}

absl::string_view LogFormatName(LogFormat format) {
  return format == LogFormat::kJson ? "json" : "text";
}

void SetupLogging(const LogOptions& options) {
  auto logger =
      std::make_shared<spdlog::logger>("zsnap", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (options.format == LogFormat::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %-5l %v", spdlog::pattern_time_type::utc);
  }
  logger->set_level(options.level);
  logger->flush_on(spdlog::level::warn);
  g_format = options.format;
  spdlog::set_default_logger(std::move(logger));
}

std::string QuoteLogValue(absl::string_view value) {
  if (IsBareToken(value)) return std::string(value);
  return absl::StrCat("\"", absl::CEscape(value), "\"");
}

void LogEvent(spdlog::level::level_enum level, absl::string_view event,
              absl::Span<const LogField> fields) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  if (g_format == LogFormat::kJson) {
    nlohmann::ordered_json object = nlohmann::ordered_json::object();
    for (const auto& [key, value] : fields) object[std::string(key)] = std::string(value);
    tls_fields = &object;
    logger->log(level, spdlog::string_view_t(event.data(), event.size()));
    tls_fields = nullptr;
    return;
  }
  std::string line(event);
  for (const auto& [key, value] : fields)
    absl::StrAppend(&line, " ", key, "=", QuoteLogValue(value));
  logger->log(level, spdlog::string_view_t(line.data(), line.size()));
}

}  // namespace zsnap::plugin
