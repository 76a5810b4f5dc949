#include "plugin/logging.h"

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "spdlog/formatter.h"
#include "spdlog/pattern_formatter.h"
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

// Appends `text` to `dest` so that it cannot end or forge a line or steer a terminal: C0
// controls, DEL, C1 controls (U+0080..U+009F) and bytes that are not valid UTF-8 become
// escapes (\n, \r, \t, \xNN); everything else, including valid non-ASCII UTF-8, is kept.
// Backslashes are kept as they are: LogEvent values arrive already C-escaped and quoted.
void AppendEscaped(std::string_view text, spdlog::memory_buf_t& dest) {
  const auto hex = [&dest](unsigned char byte) {
    static constexpr char kDigits[] = "0123456789abcdef";
    const char esc[4] = {'\\', 'x', kDigits[byte >> 4], kDigits[byte & 0xf]};
    dest.append(esc, esc + 4);
  };
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      const char* named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : nullptr;
      if (named != nullptr) {
        dest.append(named, named + 2);
      } else {
        hex(c);
      }
      ++i;
      continue;
    }
    if (c < 0x80) {
      dest.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    // A UTF-8 sequence: its length from the lead byte, then continuation bytes, no overlong
    // forms, no surrogates, nothing above U+10FFFF.
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    }
    bool valid = len != 0 && i + len <= text.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const auto cont = static_cast<unsigned char>(text[i + k]);
      valid = (cont & 0xc0) == 0x80;
      cp = (cp << 6) | (cont & 0x3f);
    }
    if (valid) {
      valid = !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10ffff)) &&
              !(cp >= 0xd800 && cp <= 0xdfff);
    }
    if (!valid) {
      hex(c);
      ++i;
      continue;
    }
    if (cp >= 0x80 && cp <= 0x9f) {  // C1 controls (CSI = U+009B steers terminals too)
      for (size_t k = 0; k < len; ++k) hex(static_cast<unsigned char>(text[i + k]));
    } else {
      dest.append(text.data() + i, text.data() + i + len);
    }
    i += len;
  }
}

// The text format's message: the payload with AppendEscaped applied. Every line, whoever
// logged it (LogEvent or a plain spdlog call with a tar name, a registry message or an image
// reference in it), stays one line.
class EscapedPayloadFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    AppendEscaped(std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedPayloadFlag>();
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
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<EscapedPayloadFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %-5l %*");
    logger->set_formatter(std::move(formatter));
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
