#include "overlay/labels.h"

#include <string>

#include "gtest/gtest.h"

namespace zsnap::overlay {
namespace {

TEST(ValidateLabels, AcceptsUpToTheLimit) {
  EXPECT_TRUE(ValidateLabels({}).ok());
  EXPECT_TRUE(ValidateLabels({{"k", "v"}}).ok());
  EXPECT_TRUE(ValidateLabels({{"key", std::string(kMaxLabelBytes - 3, 'v')}}).ok());
}

TEST(ValidateLabels, RejectsKeyPlusValueOverTheLimit) {
  const absl::Status s =
      ValidateLabels({{"ok", "1"}, {"key", std::string(kMaxLabelBytes - 2, 'v')}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("maximum size"), absl::string_view::npos);
  // A long key alone counts too, and only its first bytes are echoed.
  const absl::Status k = ValidateLabels({{std::string(kMaxLabelBytes + 1, 'k'), ""}});
  EXPECT_EQ(k.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(k.message().size(), 200u);
}

TEST(DropEmptyLabels, RemovesEmptyValuesOnly) {
  EXPECT_EQ(DropEmptyLabels({{"a", "1"}, {"b", ""}, {"c", "3"}}), (Labels{{"a", "1"}, {"c", "3"}}));
  EXPECT_TRUE(DropEmptyLabels({{"b", ""}}).empty());
}

}  // namespace
}  // namespace zsnap::overlay
