// Pure parsing: image references, WWW-Authenticate, hosts.toml, docker config.json (and a
// credential helper run as a real child process).
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/registry/test_util.h"
#include "unpack/docker_credentials.h"
#include "unpack/hosts_config.h"
#include "unpack/registry_auth.h"
#include "unpack/registry_client.h"

namespace zsnap::unpack {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

const std::string kDigest = "sha256:" + std::string(64, 'a');

TEST(ReferenceTest, DockerHubNormalisation) {
  auto r = ParseReference("busybox");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->registry, "docker.io");
  EXPECT_EQ(r->repository, "library/busybox");
  EXPECT_EQ(r->tag, "latest");
  EXPECT_EQ(r->digest, "");
  EXPECT_EQ(r->String(), "docker.io/library/busybox:latest");

  r = ParseReference("index.docker.io/foo/bar:1.0");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->registry, "docker.io");
  EXPECT_EQ(r->repository, "foo/bar");
  EXPECT_EQ(r->tag, "1.0");

  r = ParseReference("docker.io/ubuntu");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->repository, "library/ubuntu");
  r = ParseReference("user/repo");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "docker.io");
  EXPECT_EQ(r->repository, "user/repo");
}

TEST(ReferenceTest, HostsPortsTagsDigests) {
  auto r = ParseReference("127.0.0.1:5000/a/b/c:v1@" + kDigest);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->registry, "127.0.0.1:5000");
  EXPECT_EQ(r->repository, "a/b/c");
  EXPECT_EQ(r->tag, "v1");
  EXPECT_EQ(r->digest, kDigest);

  r = ParseReference("localhost/app@" + kDigest);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->registry, "localhost");
  EXPECT_EQ(r->tag, "");
  EXPECT_EQ(r->String(), "localhost/app@" + kDigest);

  r = ParseReference("localhost:5000/app");  // the port is not a tag
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->registry, "localhost:5000");
  EXPECT_EQ(r->repository, "app");
  EXPECT_EQ(r->tag, "latest");

  r = ParseReference("[::1]:5000/x/y-z__w.v:tag_1.2-3");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->registry, "[::1]:5000");
  EXPECT_EQ(r->repository, "x/y-z__w.v");
  EXPECT_EQ(r->tag, "tag_1.2-3");
}

TEST(ReferenceTest, Rejects) {
  for (const char* bad : {"", "UPPER", "a//b", "a/", "/a", "a:", "a:-tag", "a@sha256:abc",
                          "a@md5:0123", "reg.io/a/B", "a..b", "a/b___c", "host:port:x/a/b"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseReference(bad).status())) << bad;
  }
}

TEST(WwwAuthenticateTest, BearerAndBasic) {
  auto c = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
      R"(scope="repository:library/busybox:pull")");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].scheme, "bearer");
  EXPECT_THAT((*c)[0].params, ElementsAre(Pair("realm", "https://auth.docker.io/token"),
                                          Pair("scope", "repository:library/busybox:pull"),
                                          Pair("service", "registry.docker.io")));

  c = ParseWwwAuthenticate(R"(Basic realm="Registry Realm")");
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].scheme, "basic");
  EXPECT_EQ((*c)[0].params.at("realm"), "Registry Realm");
}

TEST(WwwAuthenticateTest, SeveralChallengesEscapesAndTokens) {
  auto c = ParseWwwAuthenticate(
      R"(Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple",)"
      R"( Negotiate abc123==, BEARER  Realm = "r" , error="insufficient_scope")");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 4u);
  EXPECT_EQ((*c)[0].scheme, "newauth");
  EXPECT_EQ((*c)[0].params.at("type"), "1");
  EXPECT_EQ((*c)[0].params.at("title"), R"(Login to "apps")");
  EXPECT_EQ((*c)[1].scheme, "basic");
  EXPECT_EQ((*c)[1].params.at("realm"), "simple");
  EXPECT_EQ((*c)[2].scheme, "negotiate");
  EXPECT_TRUE((*c)[2].params.empty());
  EXPECT_EQ((*c)[3].scheme, "bearer");
  EXPECT_EQ((*c)[3].params.at("realm"), "r");
  EXPECT_EQ((*c)[3].params.at("error"), "insufficient_scope");
}

TEST(WwwAuthenticateTest, Malformed) {
  EXPECT_TRUE(absl::IsInvalidArgument(ParseWwwAuthenticate(R"(Bearer realm="open)").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseWwwAuthenticate(R"(="x")").status()));
  auto empty = ParseWwwAuthenticate("  ");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(HostsConfigTest, MirrorsInFileOrderThenServer) {
  const char* toml = R"(
server = "https://registry.example:8443"
ca = "server-ca.pem"

[host."https://zzz.mirror"]
  capabilities = ["pull"]
  ca = ["/abs/ca1.pem", "rel/ca2.pem"]
  client = [["c.cert", "c.key"], "both.pem"]

[host."http://aaa.mirror:5000/custom/path"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  override_path = true
  [host."http://aaa.mirror:5000/custom/path".header]
    x-one = "1"
    x-many = ["a", "b"]

[host."https://mmm.mirror/sub"]
)";
  auto hosts = ParseHostsToml(toml, "registry.example:8443", "/etc/certs.d/registry.example");
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 4u);
  const RegistryHost& a = (*hosts)[0];
  EXPECT_EQ(a.authority, "zzz.mirror");
  EXPECT_EQ(a.scheme, "https");
  EXPECT_EQ(a.path, "/v2");
  EXPECT_TRUE(a.is_mirror);
  EXPECT_EQ(a.capabilities, kCapabilityPull);
  EXPECT_THAT(a.tls.ca_files,
              ElementsAre("/abs/ca1.pem", "/etc/certs.d/registry.example/rel/ca2.pem"));
  EXPECT_THAT(a.tls.client_certs, ElementsAre(Pair("/etc/certs.d/registry.example/c.cert",
                                                   "/etc/certs.d/registry.example/c.key"),
                                              Pair("/etc/certs.d/registry.example/both.pem",
                                                   "/etc/certs.d/registry.example/both.pem")));
  const RegistryHost& b = (*hosts)[1];
  EXPECT_EQ(b.scheme, "http");
  EXPECT_EQ(b.authority, "aaa.mirror:5000");
  EXPECT_EQ(b.path, "/custom/path");
  EXPECT_TRUE(b.tls.skip_verify);
  EXPECT_EQ(b.capabilities, kCapabilityPull | kCapabilityResolve);
  EXPECT_THAT(b.headers, ElementsAre(Pair("x-many", "a"), Pair("x-many", "b"), Pair("x-one", "1")));
  const RegistryHost& c = (*hosts)[2];
  EXPECT_EQ(c.path, "/sub/v2");
  EXPECT_EQ(c.capabilities, kAllCapabilities);
  const RegistryHost& server = (*hosts)[3];
  EXPECT_FALSE(server.is_mirror);
  EXPECT_EQ(server.authority, "registry.example:8443");
  EXPECT_THAT(server.tls.ca_files, ElementsAre("/etc/certs.d/registry.example/server-ca.pem"));
  auto url = server.MakeUrl("/lib/x/manifests/latest");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->String(), "https://registry.example:8443/v2/lib/x/manifests/latest");
}

TEST(HostsConfigTest, Errors) {
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHostsToml("server = [", "r", "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHostsToml("server = 5", "r", "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ParseHostsToml("[host.\"https://m\"]\ncapabilities = [\"fly\"]", "r", "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ParseHostsToml("[host.\"https://m\"]\nskip_verify = \"yes\"", "r", "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHostsToml("server = \"ftp://x\"", "r", "").status()));
}

TEST(HostsConfigTest, DirectoryLookupDefaultsAndLegacyCerts) {
  TempDir dir;
  HostsConfigOptions options{dir.path()};
  auto hosts = ConfigureHosts("docker.io", options);
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 1u);
  EXPECT_EQ((*hosts)[0].authority, "registry-1.docker.io");
  EXPECT_EQ((*hosts)[0].scheme, "https");

  // Legacy docker certs.d files without hosts.toml.
  std::filesystem::create_directories(dir.path() + "/reg.local:5000");
  WriteFile(dir.path() + "/reg.local:5000/ca.crt", "x");
  WriteFile(dir.path() + "/reg.local:5000/client.cert", "x");
  WriteFile(dir.path() + "/reg.local:5000/client.key", "x");
  hosts = ConfigureHosts("reg.local:5000", options);
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 1u);
  EXPECT_EQ((*hosts)[0].authority, "reg.local:5000");
  EXPECT_THAT((*hosts)[0].tls.ca_files, ElementsAre(dir.path() + "/reg.local:5000/ca.crt"));
  EXPECT_EQ((*hosts)[0].tls.client_certs.size(), 1u);

  // _default applies to registries without their own directory.
  std::filesystem::create_directories(dir.path() + "/_default");
  WriteFile(dir.path() + "/_default/hosts.toml", "[host.\"http://mirror:1\"]\n");
  hosts = ConfigureHosts("other.io", options);
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 2u);
  EXPECT_EQ((*hosts)[0].authority, "mirror:1");
  EXPECT_EQ((*hosts)[1].authority, "other.io");

  WriteFile(dir.path() + "/_default/hosts.toml", "server = [");
  EXPECT_TRUE(absl::IsInvalidArgument(ConfigureHosts("other.io", options).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ConfigureHosts("../etc", options).status()));
}

TEST(DockerCredentialsTest, Auths) {
  auto creds = DockerCredentials::Parse(R"({"auths": {
      "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldDpwYXJ0"},
      "reg.local:5000": {"username": "u", "password": "p"},
      "http://old.style/v1/": {"auth": "b2xkOnB3"},
      "token.only": {"identitytoken": "refresh"}}})");
  ASSERT_TRUE(creds.ok()) << creds.status();
  auto c = creds->Lookup("registry-1.docker.io");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->username, "hub");
  EXPECT_EQ(c->secret, "secret:part");  // split at the first colon
  c = creds->Lookup("reg.local:5000");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->username, "u");
  EXPECT_EQ(c->secret, "p");
  c = creds->Lookup("old.style");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->username, "old");
  EXPECT_TRUE(creds->Lookup("token.only")->empty());
  EXPECT_TRUE(creds->Lookup("unknown.io")->empty());

  EXPECT_TRUE(absl::IsInvalidArgument(DockerCredentials::Parse("[").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      DockerCredentials::Parse(R"({"auths":{"x":{"auth":"bm9jb2xvbg=="}}})").status()));
}

TEST(DockerCredentialsTest, LoadMissingFileIsAnonymous) {
  TempDir dir;
  auto creds = DockerCredentials::Load({.config_path = dir.path() + "/nope.json"});
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_TRUE(creds->Lookup("docker.io")->empty());
  WriteFile(dir.path() + "/config.json", R"({"auths":{"h":{"username":"a","password":"b"}}})");
  creds = DockerCredentials::Load({.config_path = dir.path() + "/config.json"});
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_EQ(creds->Lookup("h")->username, "a");
}

TEST(DockerCredentialsTest, HelpersFollowTheProtocol) {
  TempDir dir;
  // Echoes the server URL it read on stdin back as the username.
  WriteExecutable(dir.path() + "/docker-credential-echo", R"(#!/bin/sh
[ "$1" = get ] || exit 3
read -r server
printf '{"ServerURL":"%s","Username":"%s","Secret":"s3cret"}' "$server" "$server"
)");
  WriteExecutable(dir.path() + "/docker-credential-none",
                  "#!/bin/sh\ncat >/dev/null\necho 'credentials not found in native keychain'\n"
                  "exit 1\n");
  WriteExecutable(dir.path() + "/docker-credential-broken", "#!/bin/sh\necho boom >&2\nexit 2\n");
  WriteExecutable(dir.path() + "/docker-credential-slow", "#!/bin/sh\nexec sleep 30\n");
  WriteExecutable(dir.path() + "/docker-credential-chatty",
                  "#!/bin/sh\nexec head -c 1000000 /dev/zero\n");
  WriteExecutable(dir.path() + "/docker-credential-token",
                  "#!/bin/sh\necho '{\"Username\":\"<token>\",\"Secret\":\"refresh\"}'\n");

  DockerCredentialsOptions options;
  options.helper_search_path = dir.path();
  options.helper_timeout = std::chrono::milliseconds(500);
  auto creds = DockerCredentials::Parse(R"({
      "credsStore": "echo",
      "credHelpers": {"none.io": "none", "broken.io": "broken", "slow.io": "slow",
                      "chatty.io": "chatty", "token.io": "token", "missing.io": "missing"},
      "auths": {"none.io": {"username": "fallback", "password": "pw"}}})",
                                        options);
  ASSERT_TRUE(creds.ok()) << creds.status();

  auto c = creds->Lookup("docker.io");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "https://index.docker.io/v1/");
  EXPECT_EQ(c->secret, "s3cret");
  c = creds->Lookup("reg.local:5000");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "reg.local:5000");

  c = creds->Lookup("none.io");  // helper knows nothing: auths entry
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "fallback");

  EXPECT_TRUE(absl::IsUnavailable(creds->Lookup("broken.io").status()));
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(absl::IsUnavailable(creds->Lookup("slow.io").status()));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_TRUE(absl::IsUnavailable(creds->Lookup("chatty.io").status()));
  EXPECT_TRUE(creds->Lookup("token.io")->empty());
  EXPECT_TRUE(absl::IsNotFound(creds->Lookup("missing.io").status()));
}

}  // namespace
}  // namespace zsnap::unpack
