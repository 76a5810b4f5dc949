#include "plugin/report_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_format.h"
#include "tests/plugin/pull_fixtures.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using ::testing::ElementsAre;
using testing::FixtureImage;
using ::testing::HasSubstr;

constexpr int64_t kT0 = 1795000000000;  // ms

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<int64_t> Starts(const LoadedReports& loaded) {
  std::vector<int64_t> starts;
  for (const auto& r : loaded.records) starts.push_back(r.started_unix_ms);
  return starts;
}

TEST(ReportStoreTest, AppendsReadsBackNewestFirstAndKeepsTheNewestN) {
  testing::TempDir tmp;
  const std::string dir = ReportsDir(tmp.path());
  absl::StatusOr<std::unique_ptr<ReportStore>> store = ReportStore::Open(dir, 3);
  ASSERT_TRUE(store.ok()) << store.status();
  for (int i = 0; i < 5; ++i) {
    // Out of order on purpose: the history is ordered by pull start, not by append.
    ASSERT_TRUE((*store)->Append(FixtureImage(2, kT0 + (i * 7) % 5)).ok());
  }
  EXPECT_THAT(Names(dir), ElementsAre("001795000000002-000.json", "001795000000003-000.json",
                                      "001795000000004-000.json"));
  absl::StatusOr<LoadedReports> loaded = ReadReports(dir, 0);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_THAT(Starts(*loaded), ElementsAre(kT0 + 4, kT0 + 3, kT0 + 2));
  EXPECT_TRUE(loaded->warnings.empty());
  // The record survives the round trip field for field.
  const unpack::ImageRecord want = FixtureImage(2, kT0 + 4);
  EXPECT_EQ(unpack::ToJson(loaded->records[0]), unpack::ToJson(want));

  loaded = ReadReports(dir, 2);
  ASSERT_TRUE(loaded.ok());
  EXPECT_THAT(Starts(*loaded), ElementsAre(kT0 + 4, kT0 + 3));
}

TEST(ReportStoreTest, SameStartTimeGetsItsOwnFile) {
  testing::TempDir tmp;
  absl::StatusOr<std::unique_ptr<ReportStore>> store = ReportStore::Open(tmp.Sub("r"), 10);
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*store)->Append(FixtureImage(1, kT0)).ok());
  EXPECT_THAT(Names(tmp.Sub("r")),
              ElementsAre("001795000000000-000.json", "001795000000000-001.json",
                          "001795000000000-002.json"));
}

TEST(ReportStoreTest, SurvivesARestartAndPrunesToANewSmallerBound) {
  testing::TempDir tmp;
  const std::string dir = ReportsDir(tmp.path());
  {
    absl::StatusOr<std::unique_ptr<ReportStore>> store = ReportStore::Open(dir, 10);
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 4; ++i) ASSERT_TRUE((*store)->Append(FixtureImage(1, kT0 + i)).ok());
  }
  absl::StatusOr<std::unique_ptr<ReportStore>> reopened = ReportStore::Open(dir, 2);
  ASSERT_TRUE(reopened.ok());
  absl::StatusOr<LoadedReports> loaded = ReadReports(dir, 0);
  ASSERT_TRUE(loaded.ok());
  EXPECT_THAT(Starts(*loaded), ElementsAre(kT0 + 3, kT0 + 2));
  ASSERT_TRUE((*reopened)->Append(FixtureImage(1, kT0 + 9)).ok());
  loaded = ReadReports(dir, 0);
  EXPECT_THAT(Starts(*loaded), ElementsAre(kT0 + 9, kT0 + 3));
}

TEST(ReportStoreTest, CorruptReportsAreQuarantinedNotFatal) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("reports");
  {
    absl::StatusOr<std::unique_ptr<ReportStore>> store = ReportStore::Open(dir, 10);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Append(FixtureImage(1, kT0)).ok());
  }
  std::ofstream(dir + "/001795000000001-000.json") << "{\"image\": \"truncated";
  std::ofstream(dir + "/001795000000002-000.json") << "{\"image\": \"x\"}";  // fields missing
  std::ofstream(dir + "/.tmp.123.0") << "half written";
  std::ofstream(dir + "/README") << "not ours";

  // A reader (zsnap stats) skips them with a warning and changes nothing.
  absl::StatusOr<LoadedReports> loaded = ReadReports(dir, 0);
  ASSERT_TRUE(loaded.ok());
  EXPECT_THAT(Starts(*loaded), ElementsAre(kT0));
  ASSERT_EQ(loaded->warnings.size(), 2u);
  EXPECT_THAT(loaded->warnings[0], HasSubstr("001795000000002-000.json: image: missing"));
  EXPECT_THAT(loaded->warnings[1], HasSubstr("not valid JSON"));

  // The daemon's Open moves them aside and removes the crash leftover.
  absl::StatusOr<std::unique_ptr<ReportStore>> store = ReportStore::Open(dir, 10);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_THAT(Names(dir),
              ElementsAre("001795000000000-000.json", "001795000000001-000.json.corrupt",
                          "001795000000002-000.json.corrupt", "README"));
  loaded = ReadReports(dir, 0);
  EXPECT_TRUE(loaded->warnings.empty());
  EXPECT_THAT(Starts(*loaded), ElementsAre(kT0));
}

TEST(ReportStoreTest, OnlyTheNewestCorruptFilesAreKept) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("reports");
  std::filesystem::create_directories(dir);
  for (int i = 0; i < kKeepCorrupt + 3; ++i) {
    std::ofstream(dir + "/" + absl::StrFormat("%015d-000.json", kT0 + i)) << "garbage";
  }
  ASSERT_TRUE(ReportStore::Open(dir, 5).ok());
  const std::vector<std::string> names = Names(dir);
  ASSERT_EQ(names.size(), static_cast<size_t>(kKeepCorrupt));
  EXPECT_EQ(names.front(), absl::StrFormat("%015d-000.json.corrupt", kT0 + 3));
}

TEST(ReportStoreTest, MissingDirectoryIsAnEmptyHistory) {
  absl::StatusOr<LoadedReports> loaded = ReadReports("/nonexistent/zsnap/reports", 5);
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(loaded->records.empty());
}

TEST(ReportStoreTest, OpenRefusesAFileAndAZeroBound) {
  testing::TempDir tmp;
  std::ofstream(tmp.Sub("file")) << "x";
  EXPECT_EQ(ReportStore::Open(tmp.Sub("file"), 3).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReportStore::Open(tmp.Sub("r"), 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace zsnap::plugin
