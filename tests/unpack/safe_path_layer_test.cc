// Issue 11, end to end: a generated layer of thousands of entries under deep paths reached
// through symlinks (absolute, relative, escaping, chained) extracts with directory work
// linear in what the entries add (SafeRootLookups), and stays inside the destination.
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unpack/tar_builder.h"
#include "tests/unpack/tar_test_util.h"
#include "unpack/safe_path.h"
#include "unpack/tar_extractor.h"

namespace zsnap::unpack::testing {
namespace {

std::string Repeat(std::string_view part, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.append(part);
  return out;
}

TEST(SafePathLayerTest, DeepSymlinkedLayerCostsLinearLookups) {
  constexpr int kDepth = 150;    // base/d/.../d
  constexpr int kSubDepth = 30;  // e<j>/x/.../x below it, new for every group
  constexpr int kGroups = 300;   // directories created through the links
  constexpr int kPerGroup = 10;  // entries in each: 3000 in all
  const std::string deep = "base/" + Repeat("d/", kDepth);  // ends with '/'

  ScratchDir dir;
  const std::string outside_before = Snapshot(dir.outside());
  TarBuilder b;
  b.File(deep + "keep", "k");
  b.Symlink("l0", "/" + deep);                       // absolute
  b.Symlink("l1", deep.substr(0, deep.size() - 1));  // relative
  b.Symlink("esc", Repeat("../", 12));               // climbs "above" the root: the root
  b.Symlink("l2", "esc/l0");                         // a link through a link
  const char* links[] = {"l0", "l1", "l2"};
  const int links_walked[] = {1, 1, 3};
  for (int j = 0; j < kGroups; ++j) {
    const std::string parent =
        std::string(links[j % 3]) + "/e" + std::to_string(j) + "/" + Repeat("x/", kSubDepth);
    for (int k = 0; k < kPerGroup; ++k) {
      b.File(parent + "f" + std::to_string(j * kPerGroup + k), std::to_string(j));
    }
  }
  const std::string tar = b.Finish();

  const uint64_t before = SafeRootLookups();
  absl::StatusOr<ExtractStats> stats = Extract(tar, dir.dest());
  ASSERT_TRUE(stats.ok()) << stats.status();
  const uint64_t used = SafeRootLookups() - before;

  // Per group: 5 syscalls per new directory (e<j> and the x's), up to 3 per link walked,
  // the walk back up over the previous group's chain (2 per level, at most kSubDepth + 1),
  // some slack. The other entries of a group, in the same directory, cost nothing. The
  // symlinked prefix itself (151 levels) is on the chain: re-walking it costs no syscall.
  // Resolving each entry from scratch would need at least 2 * kDepth per entry.
  uint64_t budget = 5 * (kDepth + 1) + 16;  // the first entry creates base/d/...
  for (int j = 0; j < kGroups; ++j) {
    budget += 5 * (kSubDepth + 1) + 3 * links_walked[j % 3] + 2 * (kSubDepth + 1) + 16;
  }
  EXPECT_LE(used, budget) << "lookups for " << kGroups * kPerGroup << " entries";
  EXPECT_GE(used, 5u * kGroups * (kSubDepth + 1)) << "the counter counts";

  // Everything landed below dest/base/d/.../d, nothing elsewhere.
  const std::string bottom = dir.d(deep);
  for (int j : {0, 1, 2, kGroups - 1}) {
    const std::string f = bottom + "e" + std::to_string(j) + "/" + Repeat("x/", kSubDepth) + "f" +
                          std::to_string(j * kPerGroup);
    EXPECT_EQ(ReadFile(f), std::to_string(j)) << f;
  }
  std::vector<std::string> top;
  for (const auto& e : std::filesystem::directory_iterator(dir.dest())) {
    top.push_back(e.path().filename().string());
  }
  std::sort(top.begin(), top.end());
  EXPECT_EQ(top, (std::vector<std::string>{"base", "esc", "l0", "l1", "l2"}));
  EXPECT_EQ(Snapshot(dir.outside()), outside_before);
}

}  // namespace
}  // namespace zsnap::unpack::testing
