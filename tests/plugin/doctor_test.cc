#include "plugin/doctor.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "plugin/containerd_config.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;
using UserXattr = overlay::SnapshotterOptions::UserXattr;

const CheckResult* Find(const std::vector<CheckResult>& rs, const std::string& name) {
  for (const CheckResult& r : rs) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

Config Zsnap() {
  Config c;
  c.address = "/run/zsnap/zsnap.sock";
  c.root = "/var/lib/zsnap";
  return c;
}

std::string Snippet(ContainerdSeries s) {
  ContainerdSnippetOptions o;
  o.series = s;
  o.address = "/run/zsnap/zsnap.sock";
  o.root = "/var/lib/zsnap";
  return RenderContainerdSnippet(o);
}

TEST(DoctorTest, OverlayListed) {
  EXPECT_EQ(CheckOverlayListed("nodev\tsysfs\nnodev\toverlay\n\text4\n").level, CheckLevel::kOk);
  const CheckResult missing = CheckOverlayListed("nodev\tsysfs\n\text4\n");
  EXPECT_EQ(missing.level, CheckLevel::kFail);
  EXPECT_THAT(missing.fix, HasSubstr("modprobe overlay"));
}

// What `zsnap config containerd` writes passes every config check, for each version.
TEST(DoctorTest, GeneratedContainerdConfigIsGood) {
  for (ContainerdSeries s :
       {ContainerdSeries::k1_6, ContainerdSeries::k1_7, ContainerdSeries::k2_1Plus}) {
    const std::vector<CheckResult> rs = CheckContainerdConfigText(Snippet(s), "c.toml", Zsnap());
    ASSERT_GE(rs.size(), 3u);
    for (const CheckResult& r : rs) {
      EXPECT_EQ(r.level, CheckLevel::kOk)
          << ContainerdSeriesName(s) << " " << r.name << ": " << r.detail;
    }
  }
  // 2.0's snippet has no transfer keys: a warning, not a failure.
  const std::vector<CheckResult> rs =
      CheckContainerdConfigText(Snippet(ContainerdSeries::k2_0), "c.toml", Zsnap());
  EXPECT_EQ(Find(rs, "containerd/config-transfer")->level, CheckLevel::kWarn);
  EXPECT_FALSE(AnyFailed(rs));
}

TEST(DoctorTest, ContainerdConfigWithoutZsnapFailsWithTheMergeFix) {
  const std::vector<CheckResult> rs = CheckContainerdConfigText(
      "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = "
      "\"overlayfs\"\n",
      "/etc/containerd/config.toml", Zsnap());
  ASSERT_TRUE(AnyFailed(rs));
  const CheckResult* proxy = Find(rs, "containerd/config-proxy-plugin");
  ASSERT_NE(proxy, nullptr);
  EXPECT_EQ(proxy->level, CheckLevel::kFail);
  EXPECT_THAT(proxy->fix, HasSubstr("zsnap config containerd --merge /etc/containerd/config.toml "
                                    "--containerd-version 1.7"));
}

TEST(DoctorTest, ContainerdConfigDetails) {
  // Wrong address.
  std::string text = Snippet(ContainerdSeries::k1_7);
  Config other = Zsnap();
  other.address = "/run/elsewhere.sock";
  std::vector<CheckResult> rs = CheckContainerdConfigText(text, "c.toml", other);
  EXPECT_THAT(Find(rs, "containerd/config-proxy-plugin")->detail,
              HasSubstr("address is /run/zsnap/zsnap.sock but zsnap listens on "
                        "/run/elsewhere.sock"));
  // Annotations left at the default, CRI on overlayfs.
  rs = CheckContainerdConfigText(
      "version = 3\n[proxy_plugins.zsnap]\ntype = \"snapshot\"\naddress = "
      "\"/run/zsnap/zsnap.sock\"\n",
      "c.toml", Zsnap());
  EXPECT_EQ(Find(rs, "containerd/config-proxy-plugin")->level, CheckLevel::kOk);
  EXPECT_EQ(Find(rs, "containerd/config-cri-snapshotter")->level, CheckLevel::kFail);
  EXPECT_THAT(Find(rs, "containerd/config-cri-annotations")->detail,
              HasSubstr("unset (default true)"));
  EXPECT_THAT(Find(rs, "containerd/config-cri-annotations")->fix,
              HasSubstr("--containerd-version 2.x"));
  EXPECT_EQ(Find(rs, "containerd/config-exports-root")->level, CheckLevel::kWarn);
  // Not TOML; version 1.
  EXPECT_EQ(CheckContainerdConfigText("version = [", "c.toml", Zsnap())[0].level,
            CheckLevel::kFail);
  EXPECT_THAT(CheckContainerdConfigText("root = \"/x\"", "c.toml", Zsnap())[0].detail,
              HasSubstr("config version 1"));
}

TEST(DoctorTest, ImportsAreAWarning) {
  const std::string text =
      "imports = [\"/etc/containerd/config.d/*.toml\"]\n" + Snippet(ContainerdSeries::k1_7);
  const std::vector<CheckResult> rs = CheckContainerdConfigText(text, "c.toml", Zsnap());
  ASSERT_NE(Find(rs, "containerd/config-imports"), nullptr);
  EXPECT_EQ(Find(rs, "containerd/config-imports")->level, CheckLevel::kWarn);
  EXPECT_THAT(Find(rs, "containerd/config-imports")->detail,
              HasSubstr("/etc/containerd/config.d/*.toml"));
  EXPECT_FALSE(AnyFailed(rs));
}

TEST(DoctorTest, ContainerdAddressFromConfig) {
  EXPECT_EQ(ContainerdAddressFromConfig("version = 2\n[grpc]\naddress = \"/x/c.sock\"\n"),
            "/x/c.sock");
  EXPECT_EQ(ContainerdAddressFromConfig("version = 2\n"), "/run/containerd/containerd.sock");
  EXPECT_EQ(ContainerdAddressFromConfig("not toml ["), "/run/containerd/containerd.sock");
}

TEST(DoctorTest, CtrPluginsOutput) {
  const std::string out =
      "TYPE                                  ID                       PLATFORMS      STATUS\n"
      "io.containerd.snapshotter.v1          overlayfs                linux/amd64    ok\n"
      "io.containerd.snapshotter.v1          zsnap                    -              ok\n"
      "io.containerd.snapshotter.v1          zfs                      linux/amd64    skip\n";
  EXPECT_EQ(SnapshotterStatusFromCtr(out, "zsnap"), "ok");
  EXPECT_EQ(SnapshotterStatusFromCtr(out, "zfs"), "skip");
  EXPECT_EQ(SnapshotterStatusFromCtr(out, "stargz"), "");
}

TEST(DoctorTest, Userxattr) {
  EXPECT_EQ(CheckUserxattr(UserXattr::kAuto, true).level, CheckLevel::kOk);
  EXPECT_EQ(CheckUserxattr(UserXattr::kAuto, false).level, CheckLevel::kOk);
  EXPECT_EQ(CheckUserxattr(UserXattr::kOff, true).level, CheckLevel::kFail);
  EXPECT_EQ(CheckUserxattr(UserXattr::kOn, false).level, CheckLevel::kWarn);
  EXPECT_EQ(CheckUserxattr(UserXattr::kOff, false).level, CheckLevel::kOk);
}

TEST(DoctorTest, RootFilesystemProbesLeaveNothingBehind) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (overlay mount, trusted.* xattrs)";
  testing::TempDir dir;
  const std::string root = dir.Sub("not-yet/created");  // probes in the nearest existing dir
  const std::vector<CheckResult> rs = CheckRootFilesystem(root, false);
  ASSERT_NE(Find(rs, "root/overlay-mount"), nullptr);
  // Test machines put TEST_TMPDIR on ext4/xfs/tmpfs; overlay mounts work on all of them.
  EXPECT_EQ(Find(rs, "root/overlay-mount")->level, CheckLevel::kOk)
      << Find(rs, "root/overlay-mount")->detail;
  EXPECT_NE(Find(rs, "root/xattr-trusted"), nullptr);
  EXPECT_NE(Find(rs, "root/xattr-user"), nullptr);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "probe dir left behind";
}

TEST(DoctorTest, SocketsAndRegistry) {
  testing::TempDir dir;
  EXPECT_EQ(CheckZsnapSocket(dir.Sub("none.sock"), absl::Seconds(1)).level, CheckLevel::kFail);
  EXPECT_EQ(CheckContainerdSocket(dir.Sub("none.sock"), absl::Seconds(1)).level, CheckLevel::kFail);

  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string reachable = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  EXPECT_EQ(CheckRegistry(reachable, absl::Seconds(2)).level, CheckLevel::kOk);
  close(fd);
  EXPECT_EQ(CheckRegistry(reachable, absl::Seconds(2)).level, CheckLevel::kFail);
  EXPECT_EQ(CheckRegistry("no-such-host.invalid", absl::Seconds(2)).level, CheckLevel::kFail);
}

TEST(DoctorTest, CtrMissingIsASkip) {
  EXPECT_EQ(CheckCtrPlugins("/nonexistent/ctr", "/run/x.sock", absl::Seconds(1)).level,
            CheckLevel::kSkip);
}

TEST(DoctorTest, RunDoctorReportsAndExitsOnFailures) {
  testing::TempDir dir;
  DoctorOptions o;
  o.zsnap.root = dir.Sub("root");
  o.zsnap.address = dir.Sub("zsnap.sock");
  o.containerd_config_path = dir.Sub("missing-containerd.toml");
  o.containerd_address = dir.Sub("containerd.sock");
  o.ctr = "ctr";
  o.timeout = absl::Seconds(1);
  const std::vector<CheckResult> rs = RunDoctor(o);
  EXPECT_TRUE(AnyFailed(rs));
  // No containerd socket: ctr (which would retry until its timeout) is not run.
  EXPECT_EQ(Find(rs, "containerd/plugin")->level, CheckLevel::kSkip);
  EXPECT_EQ(Find(rs, "containerd/config")->level, CheckLevel::kFail);
  EXPECT_THAT(Find(rs, "containerd/config")->fix, HasSubstr("zsnap config containerd --merge"));
  const std::string text = FormatDoctorReport(rs);
  EXPECT_THAT(text, HasSubstr("FAIL  zsnap/socket: cannot connect to"));
  EXPECT_THAT(text, HasSubstr("      fix: "));
  const nlohmann::json json = DoctorReportJson(rs);
  EXPECT_EQ(json["ok"], false);
  EXPECT_EQ(json["checks"].size(), rs.size());
}

}  // namespace
}  // namespace zsnap::plugin
