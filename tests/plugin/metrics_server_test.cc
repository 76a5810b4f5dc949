#include "plugin/metrics_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "absl/strings/numbers.h"
#include "plugin/metrics.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A connected socket to `address` as MetricsServer::address() spells it, or -1.
int Connect(const std::string& address) {
  if (address.starts_with("unix://")) {
    return testing::ConnectUnix(address.substr(7));
  }
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(colon + 1), &port));
  std::string host = address.substr(0, colon);
  if (host.starts_with('[')) {
    host = host.substr(1, host.size() - 2);
    const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(port);
    inet_pton(AF_INET6, host.c_str(), &addr.sin6_addr);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends `request` on a new connection and returns everything the server sends until it closes.
std::string Exchange(const std::string& address, const std::string& request) {
  const int fd = Connect(address);
  if (fd < 0) return "connect failed: " + std::string(strerror(errno));
  EXPECT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  return response;
}

std::string Get(const std::string& address, const std::string& target) {
  return Exchange(address, "GET " + target + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
}

TEST(ParseMetricsAddressTest, Accepted) {
  absl::StatusOr<MetricsAddress> a = ParseMetricsAddress("127.0.0.1:9464");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, MetricsAddress::Kind::kTcp);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9464);
  a = ParseMetricsAddress("[::1]:0");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 0);
  a = ParseMetricsAddress("unix:///run/zsnap/metrics.sock");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, MetricsAddress::Kind::kUnix);
  EXPECT_EQ(a->path, "/run/zsnap/metrics.sock");
}

TEST(ParseMetricsAddressTest, Refused) {
  for (const char* bad : {"", "127.0.0.1", "localhost:9464", "127.0.0.1:65536", "127.0.0.1:-1",
                          "127.0.0.1:", "::1:9464", "[::1]9464", "unix://relative.sock",
                          "unix:///run/", "http://127.0.0.1:9464"}) {
    absl::StatusOr<MetricsAddress> a = ParseMetricsAddress(bad);
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(ParseMetricsAddress("localhost:1").status().message(),
              HasSubstr("the host must be an IP address"));
  EXPECT_THAT(ParseMetricsAddress("unix:///" + std::string(120, 'a')).status().message(),
              HasSubstr("longer than the 107 bytes"));
}

TEST(MetricsServerTest, ServesMetricsOnAnEphemeralTcpPort) {
  Metrics metrics(BuildInfo{.version = "9.9", .grpc_version = "1"});
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", [&metrics] { return metrics.Expose(); });
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  EXPECT_THAT(address, StartsWith("127.0.0.1:"));
  EXPECT_NE(address, "127.0.0.1:0");

  const std::string response = Get(address, "/metrics");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response, HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
  EXPECT_THAT(response, HasSubstr("\r\n\r\n# HELP "));
  EXPECT_THAT(response, HasSubstr("zsnap_build_info{grpc_version=\"1\",version=\"9.9\"} 1\n"));
  // Each scrape renders afresh.
  metrics.AddInFlight(3);
  EXPECT_THAT(Get(address, "/metrics?x=1"), HasSubstr("zsnap_layers_in_flight 3\n"));

  EXPECT_THAT(Get(address, "/"), StartsWith("HTTP/1.1 404 Not Found\r\n"));
  EXPECT_THAT(Get(address, "/metricsx"), StartsWith("HTTP/1.1 404 Not Found\r\n"));
  const std::string post = Exchange(
      address,
      "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(post, StartsWith("HTTP/1.1 405 Method Not Allowed\r\n"));
  EXPECT_THAT(post, HasSubstr("Allow: GET\r\n"));
  // Not HTTP: the connection is closed, the server carries on.
  EXPECT_EQ(Exchange(address, "\x16\x03\x01 hello\r\n\r\n"), "");
  EXPECT_THAT(Get(address, "/metrics"), StartsWith("HTTP/1.1 200 OK"));
}

TEST(MetricsServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  std::atomic<int> renders{0};
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", [&renders] { return std::to_string(++renders) + "\n"; });
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string response =
      Exchange((*server)->address(),
               "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(response, HasSubstr("Content-Length: 2\r\n\r\n1\nHTTP/1.1 200 OK"));
  EXPECT_THAT(response, HasSubstr("\r\n\r\n2\n"));
  EXPECT_EQ(renders.load(), 2);
}

TEST(MetricsServerTest, ServesOnIpv6Loopback) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("[::1]:0", [] { return std::string("v6\n"); });
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  EXPECT_THAT((*server)->address(), StartsWith("[::1]:"));
  EXPECT_THAT(Get((*server)->address(), "/metrics"), HasSubstr("\r\n\r\nv6\n"));
}

TEST(MetricsServerTest, ServesOnAUnixSocketAndRemovesItOnStop) {
  testing::TempDir dir;
  const std::string path = dir.Sub("run/metrics.sock");
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("unix://" + path, [] { return std::string("zsnap_up 1\n"); });
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->address(), "unix://" + path);
  EXPECT_THAT(Get((*server)->address(), "/metrics"), HasSubstr("\r\n\r\nzsnap_up 1\n"));

  // A second server must not take over a live socket.
  absl::StatusOr<std::unique_ptr<MetricsServer>> second =
      MetricsServer::Start("unix://" + path, [] { return std::string(); });
  EXPECT_FALSE(second.ok());

  (*server)->Stop();
  (*server)->Stop();  // idempotent
  struct stat st;
  EXPECT_NE(lstat(path.c_str(), &st), 0);
}

TEST(MetricsServerTest, StopClosesIdleConnections) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", [] { return std::string("x\n"); });
  ASSERT_TRUE(server.ok());
  const std::string address = (*server)->address();
  const int idle = Connect(address);  // connected, never sends a request
  ASSERT_GE(idle, 0);
  (*server)->Stop();
  char c;
  const ssize_t n = read(idle, &c, 1);
  EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << strerror(errno);
  close(idle);
  EXPECT_LT(Connect(address), 0);  // and no longer listens
}

TEST(MetricsServerTest, BindFailuresAreErrors) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> first =
      MetricsServer::Start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_TRUE(first.ok());
  absl::StatusOr<std::unique_ptr<MetricsServer>> clash =
      MetricsServer::Start((*first)->address(), [] { return std::string(); });
  ASSERT_FALSE(clash.ok());
  EXPECT_THAT(clash.status().message(), HasSubstr("bind"));
  EXPECT_FALSE(MetricsServer::Start("nonsense", [] { return std::string(); }).ok());
}

}  // namespace
}  // namespace zsnap::plugin
