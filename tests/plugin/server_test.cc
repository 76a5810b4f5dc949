#include "plugin/server.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "plugin/metrics_server.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;

// A socket file nobody listens on: what a killed daemon leaves behind.
void MakeStaleSocket(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << strerror(errno);
  close(fd);
}

// The code a Snapshots.Cleanup call over the unix socket `socket` gets back.
grpc::StatusCode CleanupCode(const std::string& socket) {
  auto stub = ::containerd::services::snapshots::v1::Snapshots::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  ::containerd::services::snapshots::v1::CleanupRequest req;
  google::protobuf::Empty resp;
  grpc::ClientContext ctx;
  return stub->Cleanup(&ctx, req, &resp).error_code();
}

bool IsSocket(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// A service with no handlers overridden: every RPC answers UNIMPLEMENTED.
class EmptyService final : public ::containerd::services::snapshots::v1::Snapshots::Service {};

TEST(PrepareSocketPathTest, CreatesMissingDirectories0700) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("a/b/zsnap.sock");
  ASSERT_TRUE(PrepareSocketPath(socket).ok());
  struct stat st;
  ASSERT_EQ(stat(dir.Sub("a/b").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(stat(dir.Sub("a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST(PrepareSocketPathTest, RemovesAStaleSocket) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("zsnap.sock");
  MakeStaleSocket(socket);
  ASSERT_TRUE(IsSocket(socket));
  ASSERT_TRUE(PrepareSocketPath(socket).ok());
  EXPECT_FALSE(IsSocket(socket));
}

TEST(PrepareSocketPathTest, RefusesToRemoveAnythingElse) {
  testing::TempDir dir;
  const std::string path = dir.Sub("zsnap.sock");
  std::ofstream(path) << "precious";
  absl::Status status = PrepareSocketPath(path);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("is not a socket"));
  std::ifstream in(path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST(PrepareSocketPathTest, SocketDirectoryThatIsAFile) {
  testing::TempDir dir;
  std::ofstream(dir.Sub("file")) << "x";
  EXPECT_EQ(PrepareSocketPath(dir.Sub("file/zsnap.sock")).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(PrepareSocketPathTest, RelativeAddressIsInvalid) {
  EXPECT_EQ(PrepareSocketPath("run/zsnap.sock").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PrepareSocketPath("/run/zsnap/").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ServerTest, ServesRemovesSocketOnShutdownAndRefusesASecondServer) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("run/zsnap.sock");
  EmptyService service;
  std::filesystem::create_directories(dir.Sub("run"));
  MakeStaleSocket(socket);
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(socket, service);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(IsSocket(socket));
  EXPECT_EQ((*server)->address(), socket);

  // A live server's socket is not stale: a second daemon must not steal it.
  EmptyService other;
  absl::StatusOr<std::unique_ptr<Server>> second = Server::Start(socket, other);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("another server is listening"));

  EXPECT_EQ(CleanupCode(socket), grpc::StatusCode::UNIMPLEMENTED);

  (*server)->Shutdown(absl::Seconds(1));
  (*server)->Shutdown(absl::Seconds(1));  // idempotent
  (*server)->Wait();
  EXPECT_FALSE(IsSocket(socket));
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// Restores the umask when a test ends, however it ends.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(umask(mask)) {}
  ~ScopedUmask() { umask(old_); }

 private:
  const mode_t old_;
};

// Under umask 0 a socket bound the plain way is 0777: any local user could drive the
// snapshotter. The daemon's sockets are 0660 whatever the umask.
TEST(ServerTest, SocketIs0660UnderUmaskZero) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("zsnap.sock");
  EmptyService service;
  ScopedUmask mask(0);
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(socket, service);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(IsSocket(socket));
  EXPECT_EQ(ModeOf(socket), 0660u);
  // Only the socket is left beside it: the temporary bind directory is gone.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            1);
  // Still reachable under its final name.
  EXPECT_EQ(CleanupCode(socket), grpc::StatusCode::UNIMPLEMENTED);
}

TEST(ServerTest, SocketModeIsConfigurable) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("zsnap.sock");
  EmptyService service;
  ScopedUmask mask(0077);
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(socket, service, {}, 0600);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(ModeOf(socket), 0600u);
}

TEST(MetricsServerSocketTest, UnixSocketIs0660UnderUmaskZero) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("metrics.sock");
  ScopedUmask mask(0);
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("unix://" + socket, [] { return std::string("m 1\n"); });
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(IsSocket(socket));
  EXPECT_EQ(ModeOf(socket), 0660u);
  const int fd = testing::ConnectUnix(socket);
  EXPECT_GE(fd, 0) << "the renamed socket still accepts";
  if (fd >= 0) close(fd);
}

TEST(BindUnixSocketTest, TooLongForTheTemporaryPathIsInvalid) {
  const std::string address = "/" + std::string(100, 'a') + "/s.sock";
  EXPECT_EQ(
      BindUnixSocket(address, 0660, [](const std::string&) { return absl::OkStatus(); }).code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(BindUnixSocketTest, BindErrorLeavesNothingBehind) {
  testing::TempDir dir;
  const absl::Status s = BindUnixSocket(
      dir.Sub("x.sock"), 0660, [](const std::string&) { return absl::UnavailableError("no"); });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace zsnap::plugin
