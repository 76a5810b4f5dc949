#include "plugin/containerd_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/plugin/test_util.h"
#include "toml++/toml.h"

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;

ContainerdSnippetOptions Options(ContainerdSeries series) {
  ContainerdSnippetOptions o;
  o.series = series;
  o.address = "/run/zsnap/zsnap.sock";
  o.root = "/var/lib/zsnap";
  o.platform = "linux/amd64";
  return o;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

toml::table Parse(const std::string& text) { return toml::parse(text); }

const toml::node* At(const toml::table& t, std::initializer_list<std::string_view> path) {
  const toml::node* n = &t;
  for (std::string_view k : path) {
    if (n == nullptr || !n->is_table()) return nullptr;
    n = n->as_table()->get(k);
  }
  return n;
}

TEST(ContainerdSeriesTest, Parses) {
  EXPECT_EQ(*ParseContainerdSeries("1.6"), ContainerdSeries::k1_6);
  EXPECT_EQ(*ParseContainerdSeries("1.6.20~ds1"), ContainerdSeries::k1_6);
  EXPECT_EQ(*ParseContainerdSeries("v1.7.24"), ContainerdSeries::k1_7);
  EXPECT_EQ(*ParseContainerdSeries("2.0"), ContainerdSeries::k2_0);
  EXPECT_EQ(*ParseContainerdSeries("2.1"), ContainerdSeries::k2_1Plus);
  EXPECT_EQ(*ParseContainerdSeries("2.x"), ContainerdSeries::k2_1Plus);
  EXPECT_EQ(*ParseContainerdSeries("2.3.4"), ContainerdSeries::k2_1Plus);
  EXPECT_FALSE(ParseContainerdSeries("1.5").ok());
  EXPECT_FALSE(ParseContainerdSeries("3.0").ok());
  EXPECT_FALSE(ParseContainerdSeries("latest").ok());
  EXPECT_EQ(ConfigVersionFor(ContainerdSeries::k1_7), 2);
  EXPECT_EQ(ConfigVersionFor(ContainerdSeries::k2_0), 3);
}

// The snippets shipped in packaging/containerd/ are exactly what the code prints.
TEST(ContainerdSnippetTest, PackagingFilesAreGenerated) {
  const std::string dir = std::string(ZSNAP_SOURCE_DIR) + "/packaging/containerd/";
  EXPECT_EQ(ReadAll(dir + "config-v2.toml"),
            RenderContainerdSnippet(Options(ContainerdSeries::k1_7)))
      << "regenerate with: zsnap config containerd --containerd-version 1.7";
  EXPECT_EQ(ReadAll(dir + "config-v3.toml"),
            RenderContainerdSnippet(Options(ContainerdSeries::k2_1Plus)))
      << "regenerate with: zsnap config containerd --containerd-version 2.x (on amd64)";
}

// containerd-api.md §2.1/§2.2: the keys and their tables, per config version.
TEST(ContainerdSnippetTest, Version2SchemaFor1x) {
  for (ContainerdSeries s : {ContainerdSeries::k1_6, ContainerdSeries::k1_7}) {
    const toml::table t = Parse(RenderContainerdSnippet(Options(s)));
    EXPECT_EQ(t["version"].value<int64_t>(), 2);
    EXPECT_EQ(t["proxy_plugins"]["zsnap"]["type"].value<std::string>(), "snapshot");
    EXPECT_EQ(t["proxy_plugins"]["zsnap"]["address"].value<std::string>(), "/run/zsnap/zsnap.sock");
    EXPECT_EQ(t["proxy_plugins"]["zsnap"]["exports"]["root"].value<std::string>(),
              "/var/lib/zsnap");
    const auto cri = t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"];
    EXPECT_EQ(cri["snapshotter"].value<std::string>(), "zsnap");
    EXPECT_EQ(cri["disable_snapshot_annotations"].value<bool>(), false);
    // Nothing of version 3 and no 1.x-unknown transfer keys.
    EXPECT_EQ(At(t, {"plugins", "io.containerd.cri.v1.images"}), nullptr);
    EXPECT_EQ(At(t, {"plugins", "io.containerd.transfer.v1.local"}), nullptr);
    EXPECT_EQ(At(t, {"proxy_plugins", "zsnap", "exports", "enable_remote_snapshot_annotations"}),
              nullptr);
  }
}

TEST(ContainerdSnippetTest, Version3SchemaFor2x) {
  const toml::table t20 = Parse(RenderContainerdSnippet(Options(ContainerdSeries::k2_0)));
  EXPECT_EQ(t20["version"].value<int64_t>(), 3);
  EXPECT_EQ(t20["plugins"]["io.containerd.cri.v1.images"]["snapshotter"].value<std::string>(),
            "zsnap");
  EXPECT_EQ(
      t20["plugins"]["io.containerd.cri.v1.images"]["disable_snapshot_annotations"].value<bool>(),
      false);
  EXPECT_EQ(At(t20, {"plugins", "io.containerd.grpc.v1.cri"}), nullptr);
  // enable_remote_snapshot_annotations is first in 2.1.0.
  EXPECT_EQ(At(t20, {"proxy_plugins", "zsnap", "exports", "enable_remote_snapshot_annotations"}),
            nullptr);

  const toml::table t = Parse(RenderContainerdSnippet(Options(ContainerdSeries::k2_1Plus)));
  EXPECT_EQ(t["version"].value<int64_t>(), 3);
  EXPECT_EQ(t["proxy_plugins"]["zsnap"]["type"].value<std::string>(), "snapshot");
  EXPECT_EQ(t["proxy_plugins"]["zsnap"]["exports"]["root"].value<std::string>(), "/var/lib/zsnap");
  EXPECT_EQ(t["proxy_plugins"]["zsnap"]["exports"]["enable_remote_snapshot_annotations"]
                .value<std::string>(),
            "true");  // a string: exports is map[string]string
  const toml::array* unpack =
      t["plugins"]["io.containerd.transfer.v1.local"]["unpack_config"].as_array();
  ASSERT_NE(unpack, nullptr);
  ASSERT_TRUE(unpack->is_array_of_tables());
  ASSERT_EQ(unpack->size(), 2u);
  EXPECT_EQ((*unpack)[0].as_table()->get_as<std::string>("snapshotter")->get(), "overlayfs");
  EXPECT_EQ((*unpack)[1].as_table()->get_as<std::string>("snapshotter")->get(), "zsnap");
  EXPECT_EQ((*unpack)[1].as_table()->get_as<std::string>("platform")->get(), "linux/amd64");
}

// Merging into an empty table gives the same document as the rendered snippet.
TEST(ContainerdMergeTest, MergeEqualsRenderedSnippet) {
  for (ContainerdSeries s :
       {ContainerdSeries::k1_6, ContainerdSeries::k2_0, ContainerdSeries::k2_1Plus}) {
    const std::string version = s == ContainerdSeries::k1_6 ? "version = 2\n" : "version = 3\n";
    absl::StatusOr<ContainerdMerge> m = MergeContainerdConfig(version, "c.toml", Options(s));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(Parse(m->text), Parse(RenderContainerdSnippet(Options(s))))
        << ContainerdSeriesName(s);
  }
}

TEST(ContainerdMergeTest, KeepsOtherSettingsAndIsIdempotent) {
  const std::string text = R"(version = 2
root = "/data/containerd"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
[proxy_plugins.other]
  type = "snapshot"
  address = "/run/other.sock"
)";
  absl::StatusOr<ContainerdMerge> m =
      MergeContainerdConfig(text, "c.toml", Options(ContainerdSeries::k1_7));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT(m->changes, ::testing::Contains(HasSubstr("'overlayfs' -> 'zsnap'")));
  const toml::table t = Parse(m->text);
  EXPECT_EQ(t["root"].value<std::string>(), "/data/containerd");
  EXPECT_EQ(t["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"].value<std::string>(),
            "registry.k8s.io/pause:3.9");
  EXPECT_EQ(t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["default_runtime_name"]
                .value<std::string>(),
            "runc");
  EXPECT_EQ(t["proxy_plugins"]["other"]["address"].value<std::string>(), "/run/other.sock");
  EXPECT_EQ(
      t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["snapshotter"].value<std::string>(),
      "zsnap");

  absl::StatusOr<ContainerdMerge> again =
      MergeContainerdConfig(m->text, "c.toml", Options(ContainerdSeries::k1_7));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed());
  EXPECT_EQ(again->text, m->text);
}

TEST(ContainerdMergeTest, UnpackConfigAppendsToAnExistingList) {
  const std::string text = R"(version = 3
[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
  platform = "linux/amd64"
  snapshotter = "stargz"
)";
  absl::StatusOr<ContainerdMerge> m =
      MergeContainerdConfig(text, "c.toml", Options(ContainerdSeries::k2_1Plus));
  ASSERT_TRUE(m.ok()) << m.status();
  const toml::table t = Parse(m->text);
  const toml::array* a =
      t["plugins"]["io.containerd.transfer.v1.local"]["unpack_config"].as_array();
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->size(), 2u);  // the user's list is kept as is (no overlayfs added), zsnap appended
  EXPECT_EQ((*a)[0].as_table()->get_as<std::string>("snapshotter")->get(), "stargz");
  EXPECT_EQ((*a)[1].as_table()->get_as<std::string>("snapshotter")->get(), "zsnap");
}

TEST(ContainerdMergeTest, RefusesVersionMismatch) {
  absl::StatusOr<ContainerdMerge> m =
      MergeContainerdConfig("version = 2\n", "c.toml", Options(ContainerdSeries::k2_1Plus));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(m.status().message(), HasSubstr("c.toml is containerd config version 2"));
  EXPECT_THAT(m.status().message(), HasSubstr("containerd config migrate"));

  m = MergeContainerdConfig("version = 3\n", "c.toml", Options(ContainerdSeries::k1_6));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(m.status().message(), HasSubstr("--containerd-version 2.x"));

  m = MergeContainerdConfig("root = \"/x\"\n", "c.toml", Options(ContainerdSeries::k1_7));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(m.status().message(), HasSubstr("config version 1"));

  EXPECT_TRUE(
      MergeContainerdConfig("version = 4\n", "c.toml", Options(ContainerdSeries::k2_1Plus)).ok());
  m = MergeContainerdConfig("version = 2\n[proxy_plugins]\nzsnap = 1\n", "c.toml",
                            Options(ContainerdSeries::k1_7));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("proxy_plugins.zsnap is not a table"));
  EXPECT_EQ(MergeContainerdConfig("version = [", "c.toml", Options(ContainerdSeries::k1_7))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ContainerdMergeTest, CommentOnlyFileKeepsItsComments) {
  absl::StatusOr<ContainerdMerge> m =
      MergeContainerdConfig("# managed by hand\n", "c.toml", Options(ContainerdSeries::k1_7));
  ASSERT_TRUE(m.ok());
  EXPECT_THAT(m->text, ::testing::StartsWith("# managed by hand\n"));
  EXPECT_EQ(Parse(m->text), Parse(RenderContainerdSnippet(Options(ContainerdSeries::k1_7))));
}

TEST(ContainerdMergeFileTest, BackupAtomicWriteAndIdempotence) {
  testing::TempDir dir;
  const std::string path = dir.Sub("config.toml");
  const std::string original = "# hand-written\nversion = 2\nroot = \"/data\"\n";
  std::ofstream(path) << original;
  chmod(path.c_str(), 0600);
  const absl::Time now =
      absl::FromCivil(absl::CivilSecond(2026, 11, 18, 9, 46, 40), absl::UTCTimeZone());

  absl::StatusOr<ContainerdMergeFileResult> r =
      MergeContainerdConfigFile(path, Options(ContainerdSeries::k1_7), now);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->created);
  EXPECT_EQ(r->backup, path + ".bak-20261118T094640Z");
  EXPECT_EQ(ReadAll(r->backup), original);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Parse(ReadAll(path))["root"].value<std::string>(), "/data");
  const std::string merged = ReadAll(path);

  // Twice: nothing to do, no new backup, same bytes.
  r = MergeContainerdConfigFile(path, Options(ContainerdSeries::k1_7), now + absl::Seconds(5));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->changes.empty());
  EXPECT_TRUE(r->backup.empty());
  EXPECT_EQ(ReadAll(path), merged);

  // A second change in the same second does not overwrite the first backup.
  ContainerdSnippetOptions other = Options(ContainerdSeries::k1_7);
  other.address = "/run/other/zsnap.sock";
  r = MergeContainerdConfigFile(path, other, now);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->backup, path + ".bak-20261118T094640Z.1");
  EXPECT_EQ(ReadAll(path + ".bak-20261118T094640Z"), original);

  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_THAT(e.path().string(), ::testing::Not(HasSubstr("zsnap-tmp"))) << "temp file left";
    ++files;
  }
  EXPECT_EQ(files, 3);

  // Mismatch: refused, file untouched.
  const std::string before = ReadAll(path);
  r = MergeContainerdConfigFile(path, Options(ContainerdSeries::k2_1Plus), now);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadAll(path), before);
}

TEST(ContainerdMergeFileTest, FollowsASymlink) {
  testing::TempDir dir;
  const std::string target = dir.Sub("real.toml");
  const std::string link = dir.Sub("config.toml");
  std::ofstream(target) << "version = 2\n";
  ASSERT_EQ(symlink("real.toml", link.c_str()), 0);
  absl::StatusOr<ContainerdMergeFileResult> r =
      MergeContainerdConfigFile(link, Options(ContainerdSeries::k1_7), absl::Now());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_THAT(r->backup, ::testing::StartsWith(target + ".bak-"));
  EXPECT_EQ(Parse(ReadAll(link))["proxy_plugins"]["zsnap"]["type"].value<std::string>(),
            "snapshot");
}

TEST(ContainerdMergeFileTest, CreatesAMissingFile) {
  testing::TempDir dir;
  const std::string path = dir.Sub("new.toml");
  absl::StatusOr<ContainerdMergeFileResult> r =
      MergeContainerdConfigFile(path, Options(ContainerdSeries::k2_1Plus), absl::Now());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->created);
  EXPECT_TRUE(r->backup.empty());
  EXPECT_EQ(ReadAll(path), RenderContainerdSnippet(Options(ContainerdSeries::k2_1Plus)));
}

}  // namespace
}  // namespace zsnap::plugin
