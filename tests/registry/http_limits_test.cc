// HttpClient against servers that never finish: endless chunk extensions and trailers (memory
// must stay bounded), peers that trickle bytes (low-speed guard, total deadline) or stall
// (cancellation from another thread). Servers send what a hostile peer would; the client's
// limits are set small so every case ends in about a second.
#include <chrono>
#include <fstream>
#include <future>
#include <stop_token>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/registry/fake_server.h"
#include "unpack/http_client.h"

namespace zsnap::unpack {
namespace {

using fake::Request;
using fake::tcp;
using std::chrono::milliseconds;

// A field of /proc/self/status in KiB ("VmRSS", "VmHWM"), or -1.
int64_t ProcStatusKiB(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, field + ":")) continue;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits.push_back(c);
    }
    int64_t v = -1;
    return absl::SimpleAtoi(digits, &v) ? v : -1;
  }
  return -1;
}

// Resets VmHWM (the peak RSS) to the current RSS (proc(5) clear_refs "5"); false if the
// kernel refuses.
bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}

// Writes `head`, then `filler` repeatedly until `max_bytes` are sent or the client goes away.
void Flood(tcp::socket& s, const std::string& head, size_t max_bytes) {
  boost::system::error_code ec;
  boost::asio::write(s, boost::asio::buffer(head), ec);
  const std::string filler(64 * 1024, 'a');
  for (size_t sent = 0; !ec && sent < max_bytes; sent += filler.size()) {
    boost::asio::write(s, boost::asio::buffer(filler), ec);
  }
}

// Writes `head`, then one byte every `gap` until `max_bytes` are sent or the client goes away.
void Trickle(tcp::socket& s, const std::string& head, size_t max_bytes, milliseconds gap) {
  boost::system::error_code ec;
  boost::asio::write(s, boost::asio::buffer(head), ec);
  for (size_t sent = 0; !ec && sent < max_bytes; ++sent) {
    std::this_thread::sleep_for(gap);  // the server's pace, not synchronisation
    boost::asio::write(s, boost::asio::buffer("x", 1), ec);
  }
}

// Blocks until the client closes the connection.
void WaitForClose(tcp::socket& s) {
  char c;
  boost::system::error_code ec;
  while (!ec) s.read_some(boost::asio::buffer(&c, 1), ec);
}

HttpRequest Get(const FakeServer& server, const std::string& path = "/x") {
  HttpRequest r;
  r.url = *ParseUrl(server.url() + path);
  return r;
}

HttpTimeouts Fast() {
  HttpTimeouts t;
  t.connect = milliseconds(5000);
  t.io = milliseconds(20000);
  t.low_speed_bytes = 0;
  t.total = milliseconds(0);
  return t;
}

constexpr size_t kFlood = 256u << 20;
constexpr int64_t kMaxGrowthKiB = 64 << 10;

// Beast 1.74 buffers a chunk header until its CRLF with no limit: 256 MiB of extension cost
// 256+ MiB of RSS. Now the read buffer is bounded and the read fails.
TEST(HttpLimitsTest, EndlessChunkExtensionIsBounded) {
  FakeServer server([](const Request&, tcp::socket& s) {
    Flood(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10;ext=", kFlood);
  });
  const bool reset = ResetPeakRss();
  const int64_t before = ProcStatusKiB(reset ? "VmRSS" : "VmHWM");
  HttpClient client(Fast());
  auto response = client.Send(Get(server));
  ASSERT_TRUE(response.ok()) << response.status();
  absl::StatusOr<std::string> body = (*response)->ReadAll(1 << 20);
  response->reset();
  const int64_t peak = ProcStatusKiB("VmHWM");
  EXPECT_TRUE(absl::IsResourceExhausted(body.status())) << body.status();
  EXPECT_TRUE(absl::StrContains(body.status().message(), "chunk header or the trailer"))
      << body.status();
  ASSERT_GT(before, 0);
  EXPECT_LT(peak - before, kMaxGrowthKiB) << "peak RSS grew by " << (peak - before) << " KiB";
}

TEST(HttpLimitsTest, EndlessTrailerIsBounded) {
  FakeServer server([](const Request&, tcp::socket& s) {
    Flood(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: ", kFlood);
  });
  const bool reset = ResetPeakRss();
  const int64_t before = ProcStatusKiB(reset ? "VmRSS" : "VmHWM");
  HttpClient client(Fast());
  auto response = client.Send(Get(server));
  ASSERT_TRUE(response.ok()) << response.status();
  absl::StatusOr<std::string> body = (*response)->ReadAll(1 << 20);
  response->reset();
  const int64_t peak = ProcStatusKiB("VmHWM");
  EXPECT_TRUE(absl::IsResourceExhausted(body.status())) << body.status();
  ASSERT_GT(before, 0);
  EXPECT_LT(peak - before, kMaxGrowthKiB) << "peak RSS grew by " << (peak - before) << " KiB";
}

// Chunked bodies with extensions and trailers of a sane size still parse.
TEST(HttpLimitsTest, ChunkExtensionsAndTrailersOfSaneSizeParse) {
  FakeServer server([](const Request&, tcp::socket& s) {
    const std::string ext(8000, 'e');
    std::string reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 50; ++i) absl::StrAppend(&reply, "3;", ext, "\r\nabc\r\n");
    absl::StrAppend(&reply, "0\r\nX-Trailer: ", std::string(4000, 't'), "\r\n\r\n");
    boost::system::error_code ec;
    boost::asio::write(s, boost::asio::buffer(reply), ec);
  });
  HttpClient client(Fast());
  auto response = client.Send(Get(server));
  ASSERT_TRUE(response.ok()) << response.status();
  absl::StatusOr<std::string> body = (*response)->ReadAll(1 << 20);
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->size(), 150u);
}

// One byte every 100 ms is below 1 KiB/s: the guard ends the read after about a second,
// where the per-read timeout (20 s) alone would wait out all 300 bytes (30 s).
TEST(HttpLimitsTest, TricklingBodyHitsTheLowSpeedLimit) {
  FakeServer server([](const Request&, tcp::socket& s) {
    Trickle(s, "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n", 300, milliseconds(100));
  });
  HttpTimeouts t = Fast();
  t.low_speed_bytes = 1024;
  t.low_speed_window = milliseconds(1000);
  HttpClient client(t);
  const auto start = std::chrono::steady_clock::now();
  HttpRequest request = Get(server);
  request.bounded = false;  // a blob: only the speed guard applies
  auto response = client.Send(request);
  ASSERT_TRUE(response.ok()) << response.status();
  absl::StatusOr<std::string> body = (*response)->ReadAll(1 << 20);
  EXPECT_TRUE(absl::IsUnavailable(body.status())) << body.status();
  EXPECT_TRUE(absl::StrContains(body.status().message(), "low-speed limit")) << body.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(HttpLimitsTest, TricklingHeaderHitsTheLowSpeedLimit) {
  FakeServer server([](const Request&, tcp::socket& s) {
    Trickle(s, "HTTP/1.1 200 OK\r\nX-Slow: ", 300, milliseconds(100));
  });
  HttpTimeouts t = Fast();
  t.low_speed_bytes = 1024;
  t.low_speed_window = milliseconds(1000);
  HttpClient client(t);
  absl::Status s = client.Send(Get(server)).status();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "low-speed limit")) << s;
}

// Fast enough for the speed guard (10 B/s over 1 B/s), but a manifest must be done within
// the total deadline.
TEST(HttpLimitsTest, BoundedRequestHasATotalDeadline) {
  FakeServer server([](const Request&, tcp::socket& s) {
    Trickle(s, "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n", 300, milliseconds(100));
  });
  HttpTimeouts t = Fast();
  t.low_speed_bytes = 1;
  t.low_speed_window = milliseconds(1000);
  t.total = milliseconds(1000);
  HttpClient client(t);
  const auto start = std::chrono::steady_clock::now();
  auto response = client.Send(Get(server));
  ASSERT_TRUE(response.ok()) << response.status();
  absl::StatusOr<std::string> body = (*response)->ReadAll(1 << 20);
  EXPECT_TRUE(absl::IsDeadlineExceeded(body.status())) << body.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

// A stop request from another thread ends a read that would otherwise wait for the 20 s
// per-read timeout.
TEST(HttpLimitsTest, StopRequestCancelsAStalledRead) {
  std::promise<void> stalled;
  FakeServer server([&](const Request&, tcp::socket& s) {
    boost::system::error_code ec;
    boost::asio::write(s, boost::asio::buffer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"),
                       ec);
    stalled.set_value();
    WaitForClose(s);
  });
  HttpClient client(Fast());
  std::stop_source stop;
  HttpRequest request = Get(server);
  request.stop = stop.get_token();
  auto reader = std::async(std::launch::async, [&]() -> absl::Status {
    auto response = client.Send(request);
    if (!response.ok()) return response.status();
    return (*response)->ReadAll(1 << 20).status();
  });
  ASSERT_EQ(stalled.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  stop.request_stop();
  ASSERT_EQ(reader.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  absl::Status s = reader.get();
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
}

TEST(HttpLimitsTest, StoppedRequestIsNotSent) {
  FakeServer server([](const Request&, tcp::socket& s) { fake::Respond(s, 200, "x"); });
  HttpClient client(Fast());
  std::stop_source stop;
  stop.request_stop();
  HttpRequest request = Get(server);
  request.stop = stop.get_token();
  absl::Status s = client.Send(request).status();
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
}

}  // namespace
}  // namespace zsnap::unpack
