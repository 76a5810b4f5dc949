// A real registry for tests: /usr/bin/docker-registry (distribution 2.8) on 127.0.0.1 with a
// port chosen at run time, storage in a temp dir, optional TLS and htpasswd auth; plus an
// OCI image pusher that speaks the Registry API with zsnap's own HttpClient, and a private CA
// made with the openssl CLI.
#pragma once

#include <crypt.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/registry/test_util.h"
#include "unpack/http_client.h"
#include "unpack/registry_auth.h"

extern char** environ;

namespace zsnap::unpack {

inline constexpr char kRegistryBinary[] = "/usr/bin/docker-registry";

// A port that was free a moment ago (the registry binds it itself; no fixed ports).
inline uint16_t PickFreePort() {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor a(
      ioc, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// bcrypt (what the registry's htpasswd accepts) through libxcrypt.
inline std::string BcryptHash(const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof salt) == nullptr) return "";
  crypt_data data{};
  const char* hash = crypt_r(password.c_str(), salt, &data);
  return hash != nullptr && hash[0] == '$' ? hash : "";
}

// A CA and a server certificate for 127.0.0.1 signed by it (EC keys: fast to make).
struct TestCa {
  std::string ca_pem, server_pem, server_key;
};
inline bool MakeTestCa(const std::string& dir, TestCa& out) {
  out = {dir + "/ca.pem", dir + "/server.pem", dir + "/server.key"};
  WriteFile(dir + "/ext.cnf",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            "extendedKeyUsage=serverAuth\n");
  std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  std::string cmd = absl::StrCat(
      "cd ", dir, " && openssl req -x509 ", ec,
      " -keyout ca.key -out ca.pem -days 2 -subj /CN=zsnap-test-ca && openssl req ", ec,
      " -keyout server.key -out server.csr -subj /CN=127.0.0.1 && openssl x509 -req -in "
      "server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile "
      "ext.cnf) >",
      dir, "/openssl.log 2>&1");
  return std::system(("(" + cmd).c_str()) == 0;
}

class DockerRegistry {
 public:
  struct Options {
    std::string tls_cert, tls_key;  // both set: serve https
    std::string htpasswd;           // set: basic auth with this file
  };

  // Starts the registry and waits (polling /v2/, bounded) until it answers.
  ::testing::AssertionResult Start(const Options& options) {
    port_ = PickFreePort();
    https_ = !options.tls_cert.empty();
    std::string config = absl::StrCat(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n  filesystem:\n    rootdirectory: ",
        dir_.path(), "/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:", port_, "\n");
    if (https_) {
      absl::StrAppend(&config, "  tls:\n    certificate: ", options.tls_cert,
                      "\n    key: ", options.tls_key, "\n");
    }
    if (!options.htpasswd.empty()) {
      absl::StrAppend(
          &config, "auth:\n  htpasswd:\n    realm: zsnap-test\n    path: ", options.htpasswd, "\n");
    }
    std::string config_path = dir_.path() + "/config.yml";
    WriteFile(config_path, config);
    std::string log_path = dir_.path() + "/registry.log";

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    std::string arg0 = kRegistryBinary, arg1 = "serve";
    char* argv[] = {arg0.data(), arg1.data(), config_path.data(), nullptr};
    int rc = posix_spawn(&pid_, kRegistryBinary, &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return ::testing::AssertionFailure() << "spawn docker-registry: " << rc;

    HttpClient http({std::chrono::milliseconds(2000), std::chrono::milliseconds(2000)});
    TlsOptions tls{.skip_verify = true};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return ::testing::AssertionFailure() << "docker-registry exited; log " << log_path;
      }
      HttpRequest req;
      req.url = *ParseUrl(url() + "/v2/");
      auto res = http.Send(req, tls);
      if (res.ok() && ((*res)->status() == 200 || (*res)->status() == 401)) {
        return ::testing::AssertionSuccess();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // poll interval
    }
    return ::testing::AssertionFailure() << "docker-registry not ready in 30 s; log " << log_path;
  }

  ~DockerRegistry() { Stop(); }

  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::string authority() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string url() const { return absl::StrCat(https_ ? "https" : "http", "://", authority()); }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  bool https_ = false;
};

// Pushes through the Registry API with HttpClient (monolithic POST-then-PUT uploads).
class Pusher {
 public:
  Pusher(std::string base_url, TlsOptions tls, std::string authorization = "")
      : base_(std::move(base_url)),
        tls_(std::move(tls)),
        authorization_(std::move(authorization)) {}

  // Returns the blob's digest.
  std::string PushBlob(const std::string& repo, const std::string& bytes) {
    std::string digest = Sha256Of(bytes);
    HttpRequest post = Make("POST", base_ + "/v2/" + repo + "/blobs/uploads/");
    auto res = http_.Send(post, tls_);
    EXPECT_TRUE(res.ok()) << res.status();
    if (!res.ok()) return digest;
    EXPECT_EQ((*res)->status(), 202);
    std::string location = (*res)->Header("Location").value_or("");
    auto put_url = ResolveUrl(*ParseUrl(base_), location);
    EXPECT_TRUE(put_url.ok()) << location;
    HttpRequest put = Make("PUT", "");
    put.url = *put_url;
    put.url.target += absl::StrCat(put.url.target.find('?') == std::string::npos ? "?" : "&",
                                   "digest=", QueryEscape(digest));
    put.headers.emplace_back("Content-Type", "application/octet-stream");
    put.body = bytes;
    res = http_.Send(put, tls_);
    EXPECT_TRUE(res.ok()) << res.status();
    if (res.ok()) EXPECT_EQ((*res)->status(), 201) << (*res)->ReadAll(4096).value_or("");
    return digest;
  }

  // Pushes a manifest under `tag_or_digest`; returns its digest.
  std::string PushManifest(const std::string& repo, const std::string& tag_or_digest,
                           const std::string& media_type, const std::string& bytes) {
    HttpRequest put = Make("PUT", base_ + "/v2/" + repo + "/manifests/" + tag_or_digest);
    put.headers.emplace_back("Content-Type", media_type);
    put.body = bytes;
    auto res = http_.Send(put, tls_);
    EXPECT_TRUE(res.ok()) << res.status();
    if (res.ok()) EXPECT_EQ((*res)->status(), 201) << (*res)->ReadAll(4096).value_or("");
    return Sha256Of(bytes);
  }

 private:
  HttpRequest Make(const std::string& method, const std::string& url) {
    HttpRequest r;
    r.method = method;
    if (!url.empty()) r.url = *ParseUrl(url);
    if (!authorization_.empty()) r.headers.emplace_back("Authorization", authorization_);
    return r;
  }

  std::string base_;
  TlsOptions tls_;
  std::string authorization_;
  HttpClient http_;
};

}  // namespace zsnap::unpack
