// A GoogleTest fixture for RegistryClient against FakeServer registries: points a fake
// server's registry name at plain http through a private hosts.toml directory and gives
// client options with short retries and timeouts.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/registry/fake_server.h"
#include "tests/registry/test_util.h"
#include "unpack/registry_client.h"

namespace zsnap::unpack {

// The first value of a request header, or "".
inline std::string Header(const fake::Request& r, std::string_view name) {
  auto it = r.find(boost::beast::string_view(name.data(), name.size()));
  return it == r.end() ? "" : std::string(it->value());
}

class FakeRegistryTest : public ::testing::Test {
 protected:
  RegistryClientOptions Options(CredentialsLookup creds = nullptr) {
    RegistryClientOptions o;
    o.hosts.config_dir = certs_.path();
    o.credentials = std::move(creds);
    o.retry = {.max_attempts = 3,
               .initial_backoff = std::chrono::milliseconds(1),
               .max_backoff = std::chrono::milliseconds(5)};
    o.timeouts.connect = std::chrono::milliseconds(5000);
    o.timeouts.io = std::chrono::milliseconds(5000);
    return o;
  }
  // Points `server`'s registry name at plain http (optionally with extra hosts.toml lines).
  Reference Ref(const FakeServer& server, const std::string& suffix = "/repo:v1",
                const std::string& extra_toml = "") {
    std::filesystem::create_directories(certs_.path() + "/" + server.authority());
    WriteFile(certs_.path() + "/" + server.authority() + "/hosts.toml",
              absl::StrCat("server = \"", server.url(), "\"\n", extra_toml));
    return *ParseReference(server.authority() + suffix);
  }

  TempDir certs_;
  const std::string blob_ = RandomBytes(1 << 20, 7);
  const std::string digest_ = Sha256Of(blob_);
};

}  // namespace zsnap::unpack
