#include "plugin/version.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "plugin/cli.h"

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST(VersionTest, BuildInfoHasEveryFact) {
  const BuildInfo info = GetBuildInfo();
  EXPECT_EQ(info.version, ZSNAP_VERSION);
  EXPECT_FALSE(info.git_commit.empty());
  EXPECT_FALSE(info.compiler.empty());
  EXPECT_FALSE(info.build_type.empty());
  std::vector<std::string> names;
  for (const auto& [name, version] : info.libraries) {
    names.push_back(name);
    EXPECT_THAT(version, MatchesRegex("(lts_)?[0-9].*")) << name;  // no "OpenSSL " prefix
  }
  EXPECT_THAT(names, ::testing::IsSupersetOf(
                         {"grpc", "protobuf", "zstd", "isa-l", "libarchive", "openssl", "sqlite"}));
}

TEST(VersionTest, TextAndJsonAgree) {
  const BuildInfo info = GetBuildInfo();
  const std::string text = FormatBuildInfo(info);
  const nlohmann::json json = BuildInfoJson(info);
  EXPECT_THAT(text, HasSubstr("zsnap " + info.version));
  EXPECT_THAT(text, HasSubstr("commit:     " + info.git_commit));
  EXPECT_EQ(json["version"], info.version);
  EXPECT_EQ(json["git_commit"], info.git_commit);
  for (const auto& [name, version] : info.libraries) {
    EXPECT_THAT(text, HasSubstr(version)) << name;
    EXPECT_EQ(json["libraries"][name], version);
  }
}

}  // namespace
}  // namespace zsnap::plugin
