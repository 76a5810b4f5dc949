#include "plugin/logging.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;

// Captures what one LogEvent writes to stderr (spdlog's stderr sink) under `options`.
std::string Capture(const LogOptions& options, spdlog::level::level_enum level,
                    absl::string_view event, std::vector<LogField> fields) {
  SetupLogging(options);
  ::testing::internal::CaptureStderr();
  LogEvent(level, event, fields);
  spdlog::default_logger_raw()->flush();
  std::string out = ::testing::internal::GetCapturedStderr();
  SetupLogging({});
  return out;
}

TEST(LoggingTest, QuoteLogValue) {
  EXPECT_EQ(QuoteLogValue("default/3/sha256:abc"), "default/3/sha256:abc");
  EXPECT_EQ(QuoteLogValue(""), "\"\"");
  EXPECT_EQ(QuoteLogValue("a b"), "\"a b\"");
  EXPECT_EQ(QuoteLogValue("k=v"), "\"k=v\"");
  EXPECT_EQ(QuoteLogValue("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
}

TEST(LoggingTest, ParseLevelAndFormat) {
  EXPECT_EQ(*ParseLogLevel("INFO"), spdlog::level::info);
  EXPECT_EQ(*ParseLogLevel("debug"), spdlog::level::debug);
  EXPECT_FALSE(ParseLogLevel("verbose").ok());
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_FALSE(ParseLogFormat("logfmt").ok());
  EXPECT_EQ(LogFormatName(LogFormat::kJson), "json");
}

TEST(LoggingTest, TextLineIsKeyValue) {
  const std::string line =
      Capture({.level = spdlog::level::info, .format = LogFormat::kText}, spdlog::level::info,
              "prepare", {{"key", "ns/1/k"}, {"parent", ""}, {"code", "OK"}});
  EXPECT_THAT(line, HasSubstr("info"));
  EXPECT_THAT(line, HasSubstr("prepare key=ns/1/k parent=\"\" code=OK\n"));
  EXPECT_THAT(line, ::testing::MatchesRegex("^[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z .*"));
}

TEST(LoggingTest, JsonLineIsOneObjectWithFields) {
  const std::string line =
      Capture({.level = spdlog::level::info, .format = LogFormat::kJson}, spdlog::level::info,
              "commit", {{"key", "a b"}, {"name", "n"}, {"msg", "collides"}});
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["msg"], "commit");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["key"], "a b");
  EXPECT_EQ(j["name"], "n");
  EXPECT_EQ(j["field.msg"], "collides");
  EXPECT_TRUE(j["time"].get<std::string>().ends_with("Z"));
}

TEST(LoggingTest, JsonWrapsPlainSpdlogCalls) {
  SetupLogging({.level = spdlog::level::info, .format = LogFormat::kJson});
  ::testing::internal::CaptureStderr();
  spdlog::warn("plain {} message", 42);
  spdlog::default_logger_raw()->flush();
  const std::string line = ::testing::internal::GetCapturedStderr();
  SetupLogging({});
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["msg"], "plain 42 message");
  EXPECT_EQ(j["level"], "warning");
  EXPECT_FALSE(j.contains("key"));
}

TEST(LoggingTest, JsonSurvivesInvalidUtf8) {
  const std::string line = Capture({.level = spdlog::level::info, .format = LogFormat::kJson},
                                   spdlog::level::info, "prepare", {{"key", "\xff\xfe"}});
  EXPECT_NO_THROW(nlohmann::json::parse(line));
}

// Captures what one plain spdlog call writes under `options`.
std::string CapturePlain(const LogOptions& options, std::string_view message) {
  SetupLogging(options);
  ::testing::internal::CaptureStderr();
  spdlog::error("pull failed: {}", message);
  spdlog::default_logger_raw()->flush();
  std::string out = ::testing::internal::GetCapturedStderr();
  SetupLogging({});
  return out;
}

// An image (tar name, registry message, reference) must not forge a log line or send
// terminal escapes: one call is one line, controls and invalid UTF-8 arrive escaped.
TEST(LoggingTest, TextEscapesControlCharactersFromAnySource) {
  const std::string hostile =
      "x\nlevel=error forged\r\x1b[31mred\x1b[0m\x01\x7f\xc2\x9b\xff caf\xc3\xa9";
  const std::string line =
      CapturePlain({.level = spdlog::level::info, .format = LogFormat::kText}, hostile);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  EXPECT_EQ(line.find('\r'), std::string::npos);
  EXPECT_EQ(line.find('\x1b'), std::string::npos);
  EXPECT_THAT(line, HasSubstr("pull failed: x\\nlevel=error forged\\r\\x1b[31mred\\x1b[0m"
                              "\\x01\\x7f\\xc2\\x9b\\xff caf\xc3\xa9\n"));
}

TEST(LoggingTest, TextEventValuesStayOneLine) {
  const std::string line =
      Capture({.level = spdlog::level::info, .format = LogFormat::kText}, spdlog::level::info,
              "prepare\nlevel=error forged", {{"key", "a\nb"}});
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  EXPECT_THAT(line, HasSubstr("prepare\\nlevel=error forged key=\"a\\nb\"\n"));
}

TEST(LoggingTest, JsonStaysOneValidObjectForHostileBytes) {
  const std::string hostile = "x\nlevel=error forged\r\x1b[31m\xff";
  const std::string line =
      CapturePlain({.level = spdlog::level::info, .format = LogFormat::kJson}, hostile);
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  EXPECT_EQ(line.find('\x1b'), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["msg"], "pull failed: x\nlevel=error forged\r\x1b[31m\xef\xbf\xbd");
}

TEST(LoggingTest, LevelFilters) {
  EXPECT_EQ(Capture({.level = spdlog::level::info, .format = LogFormat::kText},
                    spdlog::level::debug, "stat", {{"key", "k"}}),
            "");
  EXPECT_NE(Capture({.level = spdlog::level::debug, .format = LogFormat::kJson},
                    spdlog::level::debug, "stat", {{"key", "k"}}),
            "");
}

}  // namespace
}  // namespace zsnap::plugin
