// Many threads driving one Snapshotter: every call must succeed or fail with its documented
// code, and the store and the directory tree must agree afterwards.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "overlay/dir_util.h"
#include "overlay/snapshotter.h"
#include "spdlog/spdlog.h"
#include "tests/overlay/test_util.h"

namespace zsnap::overlay {
namespace {

TEST(SnapshotterConcurrency, PrepareCommitRemoveFromManyThreads) {
  spdlog::set_level(spdlog::level::warn);
  testing::TempDir dir;
  absl::StatusOr<std::unique_ptr<Snapshotter>> opened =
      Snapshotter::Open({.root = dir.Sub("root"), .durable = false});
  ASSERT_TRUE(opened.ok()) << opened.status();
  Snapshotter& sn = **opened;

  ASSERT_TRUE(sn.Prepare("base-a", "", {}).ok());
  ASSERT_TRUE(sn.Commit("base", "base-a", {}, "").ok());

  constexpr int kThreads = 6;
  constexpr int kRounds = 30;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const std::string key = absl::StrCat("t", t, "-", i);
        const std::string name = key + "-c";
        const auto check = [&](const absl::Status& s, const char* what) {
          if (!s.ok()) {
            ++failures;
            ADD_FAILURE() << what << " " << key << ": " << s;
          }
        };
        check(sn.Prepare(key, "base", {{"t", std::to_string(t)}}).status(), "prepare");
        absl::StatusOr<std::string> upper = sn.UpperDir(key);
        check(upper.status(), "upperdir");
        if (upper.ok()) testing::WriteFile(*upper + "/f", key);
        check(sn.GetUsage(key).status(), "usage");
        check(sn.Commit(name, key, {}, ""), "commit");
        check(sn.View(key + "-v", name, {}).status(), "view");
        // Contended: everyone tries to take the same shared key; exactly one wins each time.
        const absl::Status shared = sn.Prepare(absl::StrCat("shared-", i), "base", {}).status();
        if (!shared.ok() && shared.code() != absl::StatusCode::kAlreadyExists) {
          check(shared, "shared prepare");
        }
        check(sn.List({"kind==committed"}).status(), "list");
        if (i % 3 == 0) check(sn.Cleanup(), "cleanup");
        const absl::Status busy = sn.Remove(name);
        if (busy.code() != absl::StatusCode::kFailedPrecondition) check(busy, "remove with child");
        check(sn.Remove(key + "-v"), "remove view");
        if (i % 2 == 0) check(sn.Remove(name), "remove committed");
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);

  // Store and disk agree: one directory per snapshot, nothing else.
  absl::StatusOr<std::vector<Info>> all = sn.List({});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u + kThreads * kRounds / 2 + kRounds);  // base, odd rounds, shared-*
  ASSERT_TRUE(sn.Cleanup().ok());
  absl::StatusOr<std::vector<std::string>> dirs = ListDir(dir.Sub("root") + "/snapshots");
  ASSERT_TRUE(dirs.ok());
  EXPECT_EQ(dirs->size(), all->size());
  for (const Info& info : *all) {
    absl::StatusOr<std::string> upper = sn.UpperDir(info.name);
    ASSERT_TRUE(upper.ok());
    EXPECT_TRUE(testing::Exists(*upper)) << info.name;
  }
}

}  // namespace
}  // namespace zsnap::overlay
