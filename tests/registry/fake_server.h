// A tiny HTTP/1.1 server on Boost.Beast for tests: listens on 127.0.0.1 with a port chosen by
// the kernel, serves one request per connection on its own thread, records every request,
// and hands each to a test-supplied handler that may answer normally or misbehave (cut the
// body, redirect, …) on the raw socket.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace zsnap::unpack {

namespace fake {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;

// Writes a complete response and leaves the socket open (the server closes it).
inline void Respond(tcp::socket& socket, unsigned status, std::string body = "",
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  for (auto& [k, v] : headers) res.insert(k, v);
  res.body() = std::move(body);
  res.prepare_payload();
  beast::error_code ec;
  http::write(socket, res, ec);
}

// Writes a head announcing `total` bytes (200, or 206 with Content-Range when `offset` > 0),
// then only body[offset, offset+send) and returns: the server then closes the connection.
inline void RespondPartial(tcp::socket& socket, const std::string& body, size_t offset, size_t send,
                           bool as_range) {
  std::string head;
  if (as_range) {
    head = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " + std::to_string(offset) + "-" +
           std::to_string(body.size() - 1) + "/" + std::to_string(body.size()) + "\r\n";
  } else {
    head = "HTTP/1.1 200 OK\r\n";
    offset = 0;
  }
  head += "Content-Length: " + std::to_string(body.size() - offset) + "\r\n\r\n";
  beast::error_code ec;
  asio::write(socket, asio::buffer(head), ec);
  send = std::min(send, body.size() - offset);
  asio::write(socket, asio::buffer(body.data() + offset, send), ec);
}
}  // namespace fake

class FakeServer {
 public:
  using Handler = std::function<void(const fake::Request&, fake::tcp::socket&)>;

  explicit FakeServer(Handler handler)
      : handler_(std::move(handler)),
        acceptor_(ioc_, fake::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { Loop(); });
  }

  ~FakeServer() {
    stop_ = true;
    // Wake the blocking accept with a connection of our own.
    boost::asio::io_context ioc;
    fake::tcp::socket s(ioc);
    boost::system::error_code ec;
    s.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }

  uint16_t port() const { return port_; }
  std::string authority() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string url() const { return "http://" + authority(); }

  std::vector<fake::Request> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  size_t count(std::string_view target_prefix) const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const auto& r : requests_) {
      n += std::string(r.target()).starts_with(target_prefix);
    }
    return n;
  }

 private:
  void Loop() {
    while (!stop_) {
      fake::tcp::socket socket(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stop_) continue;
      fake::beast::flat_buffer buffer;
      fake::Request request;
      fake::http::read(socket, buffer, request, ec);
      if (ec) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(request);
      }
      handler_(request, socket);
      socket.shutdown(fake::tcp::socket::shutdown_both, ec);
      socket.close(ec);
    }
  }

  Handler handler_;
  boost::asio::io_context ioc_;
  fake::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<fake::Request> requests_;
  std::thread thread_;
};

}  // namespace zsnap::unpack
