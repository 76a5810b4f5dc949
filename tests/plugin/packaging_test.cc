// The files the .deb ships agree with the code: the default config.toml documents every key
// with its default value, and the man page names every command and flag of the CLI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/str_replace.h"
#include "plugin/cli.h"
#include "plugin/config.h"
#include "toml++/toml.h"

namespace zsnap::plugin {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Keys(const toml::table& t, const std::string& prefix, std::set<std::string>* out) {
  for (const auto& [k, v] : t) {
    const std::string name = prefix + std::string(k.str());
    if (const toml::table* sub = v.as_table()) {
      Keys(*sub, name + ".", out);
    } else {
      out->insert(name);
    }
  }
}

TEST(PackagingTest, ShippedConfigHasEveryKeyAtItsDefault) {
  const std::string path = std::string(ZSNAP_SOURCE_DIR) + "/packaging/etc/config.toml";
  absl::StatusOr<Config> shipped = Config::Load(path);
  ASSERT_TRUE(shipped.ok()) << shipped.status();
  EXPECT_EQ(*shipped, Config()) << "packaging/etc/config.toml must hold the defaults";

  std::set<std::string> want, have;
  Keys(toml::parse(Config().ToToml()), "", &want);
  Keys(toml::parse(ReadAll(path)), "", &have);
  for (const std::string& key : want) {
    EXPECT_TRUE(have.contains(key)) << key << " is not documented in packaging/etc/config.toml";
  }
}

TEST(PackagingTest, ManPageNamesEveryCommandAndFlag) {
  const std::string man = absl::StrReplaceAll(
      ReadAll(std::string(ZSNAP_SOURCE_DIR) + "/packaging/man/zsnap.8"), {{"\\-", "-"}});
  for (const std::string command :
       {"serve", "unpack", "pull", "rmi", "bench", "config", "stats", "doctor", "version"}) {
    std::string arg0 = "zsnap", arg1 = "help", arg2 = command;
    char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
    std::ostringstream out, err;
    ASSERT_EQ(RunCli(3, argv, out, err), kExitOk) << command;
    EXPECT_NE(man.find(".SS " + command), std::string::npos) << "no section for " << command;
    const std::string usage = out.str();
    const std::regex flag("--[a-z][a-z-]+");
    for (auto it = std::sregex_iterator(usage.begin(), usage.end(), flag);
         it != std::sregex_iterator(); ++it) {
      EXPECT_NE(man.find(it->str()), std::string::npos)
          << it->str() << " of 'zsnap " << command << "' is not in zsnap.8";
    }
  }
}

}  // namespace
}  // namespace zsnap::plugin
