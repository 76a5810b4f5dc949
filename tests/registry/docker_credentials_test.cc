// Hostile docker credential helpers and config.json files (issue 11): helpers that outlive
// their stdout, print null or mistyped fields, or fail after printing a secret; config files
// with wrong JSON types. Every case must end in a Status, within the helper deadline, with no
// secret in the message and no helper process left running.
#include "unpack/docker_credentials.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/registry/test_util.h"

namespace zsnap::unpack {
namespace {

// True once /proc says `pid` is gone or a zombie; false if it still runs after `guard`.
bool EventuallyDead(pid_t pid, std::chrono::seconds guard) {
  const auto give_up = std::chrono::steady_clock::now() + guard;
  while (std::chrono::steady_clock::now() < give_up) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return true;
    size_t paren = line.rfind(')');
    if (paren == std::string::npos || paren + 2 >= line.size()) return true;
    char state = line[paren + 2];
    if (state == 'Z' || state == 'X') return true;
    usleep(10'000);  // polling a condition under a deadline, not synchronising on time
  }
  return false;
}

class CredentialHelperTest : public ::testing::Test {
 protected:
  DockerCredentialsOptions Options(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    DockerCredentialsOptions options;
    options.helper_search_path = dir_.path();
    options.helper_timeout = timeout;
    return options;
  }
  void Helper(const std::string& name, const std::string& script) {
    WriteExecutable(dir_.path() + "/docker-credential-" + name, "#!/bin/sh\n" + script);
  }
  TempDir dir_;
};

TEST_F(CredentialHelperTest, HelperThatClosesStdoutAndKeepsRunningIsKilledWithItsGroup) {
  // Starts a background child (stdout elsewhere), closes its own stdout, keeps running.
  Helper("linger", "cat >/dev/null\nsleep 30 >/dev/null 2>&1 &\necho $! > \"" + dir_.path() +
                       "/child.pid\"\nexec >&-\nsleep 30\n");
  const auto start = std::chrono::steady_clock::now();
  auto creds = RunCredentialHelper("linger", "reg.io", Options(std::chrono::milliseconds(300)));
  // Generous guard only: without the bounded wait this takes the helper's full 30 s.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
  ASSERT_TRUE(absl::IsUnavailable(creds.status())) << creds.status();
  EXPECT_NE(creds.status().message().find("killed"), std::string::npos) << creds.status();

  std::ifstream pid_file(dir_.path() + "/child.pid");
  pid_t child = 0;
  ASSERT_TRUE(pid_file >> child);
  EXPECT_TRUE(EventuallyDead(child, std::chrono::seconds(10)))
      << "the helper's background child " << child << " survived";
  if (!EventuallyDead(child, std::chrono::seconds(0))) kill(child, SIGKILL);
}

TEST_F(CredentialHelperTest, NullFieldsAreEmptyAndWrongTypesAreStatuses) {
  Helper("nulls", "echo '{\"ServerURL\":null,\"Username\":null,\"Secret\":\"s3\"}'\n");
  Helper("nosecret", "echo '{\"ServerURL\":\"x\",\"Username\":null,\"Secret\":null}'\n");
  Helper("number", "echo '{\"Username\":5,\"Secret\":\"s\"}'\n");
  Helper("array", "echo '[\"Username\",\"Secret\"]'\n");
  Helper("object", "echo '{\"Username\":\"u\",\"Secret\":{\"a\":1}}'\n");

  auto creds = RunCredentialHelper("nulls", "reg.io", Options());
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_EQ(creds->username, "");
  EXPECT_EQ(creds->secret, "s3");
  creds = RunCredentialHelper("nosecret", "reg.io", Options());
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_TRUE(creds->empty());
  for (const char* helper : {"number", "array", "object"}) {
    creds = RunCredentialHelper(helper, "reg.io", Options());
    EXPECT_TRUE(absl::IsUnavailable(creds.status())) << helper << ": " << creds.status();
  }
}

TEST_F(CredentialHelperTest, FailingHelperOutputNeverReachesTheStatus) {
  Helper("leaky", "echo '{\"Username\":\"u\",\"Secret\":\"hunter2-TOPSECRET\"}'\nexit 1\n");
  auto creds = RunCredentialHelper("leaky", "reg.io", Options());
  ASSERT_TRUE(absl::IsUnavailable(creds.status())) << creds.status();
  EXPECT_EQ(creds.status().message().find("hunter2"), std::string::npos) << creds.status();
  EXPECT_NE(creds.status().message().find("exit status 1"), std::string::npos) << creds.status();
}

TEST_F(CredentialHelperTest, OnlyTheExactNotFoundMessageMeansAnonymous) {
  // docker-credential-helpers credentials/error.go: trimmed stdout == the message.
  Helper("notfound", "echo '  credentials not found in native keychain  '\nexit 1\n");
  Helper("other", "echo 'credentials not found, but here is a token: abc'\nexit 1\n");
  auto creds = RunCredentialHelper("notfound", "reg.io", Options());
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_TRUE(creds->empty());
  EXPECT_TRUE(absl::IsUnavailable(RunCredentialHelper("other", "reg.io", Options()).status()));
}

TEST(DockerConfigTypesTest, NullIsMissingAndWrongTypesAreInvalidArgument) {
  auto creds = DockerCredentials::Parse(R"({"credsStore": null, "credHelpers": null,
      "auths": {"a.io": {"auth": null, "username": "u", "password": "p", "identitytoken": null},
                "b.io": null}})");
  ASSERT_TRUE(creds.ok()) << creds.status();
  auto c = creds->Lookup("a.io");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "u");
  EXPECT_EQ(c->secret, "p");
  EXPECT_TRUE(creds->Lookup("b.io")->empty());

  for (const char* text : {
           R"({"auths": {"a.io": {"auth": 5}}})",
           R"({"auths": {"a.io": {"username": ["u"]}}})",
           R"({"auths": {"a.io": {"password": {"p": 1}}}})",
           R"({"auths": {"a.io": {"identitytoken": true}}})",
           R"({"auths": {"a.io": "dXNlcjpwYXNz"}})",
           R"({"auths": []})",
           R"({"credsStore": 5})",
           R"({"credHelpers": ["pass"]})",
           R"({"credHelpers": {"a.io": 7}})",
       }) {
    auto parsed = DockerCredentials::Parse(text);
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << text << ": " << parsed.status();
  }
  // The message names the field, not the secret next to it.
  auto bad =
      DockerCredentials::Parse(R"({"auths": {"a.io": {"password": "pw-SECRET", "auth": 1}}})");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().find("pw-SECRET"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace zsnap::unpack
