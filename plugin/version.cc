#include "plugin/version.h"

#include <archive.h>
#include <google/protobuf/stubs/common.h>
#include <grpcpp/grpcpp.h>
#include <isa-l.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>

#include "absl/base/config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "plugin/build_info.h"
#include "spdlog/version.h"
#include "toml++/toml.h"

namespace zsnap::plugin {
namespace {

// "libarchive 3.6.2" -> "3.6.2"; "OpenSSL 3.0.15 3 Sep 2024" -> "3.0.15 3 Sep 2024".
std::string WithoutPrefix(absl::string_view text, absl::string_view prefix) {
  if (absl::StartsWith(text, prefix)) text.remove_prefix(prefix.size());
  return std::string(text);
}

}  // namespace

BuildInfo GetBuildInfo() {
  BuildInfo info;
  info.version = ZSNAP_BUILD_VERSION;
  info.git_commit = ZSNAP_BUILD_GIT_COMMIT;
  info.compiler = ZSNAP_BUILD_COMPILER;
  info.build_type = ZSNAP_BUILD_TYPE;
  info.system = ZSNAP_BUILD_SYSTEM;
  info.sanitize = ZSNAP_BUILD_SANITIZE;
  info.libraries = {
      {"grpc", grpc::Version()},
      {"protobuf", google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION)},
      {"abseil", absl::StrCat("lts_", ABSL_LTS_RELEASE_VERSION, ".", ABSL_LTS_RELEASE_PATCH_LEVEL)},
      {"zstd", ZSTD_versionString()},
      {"isa-l", absl::StrCat(ISAL_MAJOR_VERSION, ".", ISAL_MINOR_VERSION, ".", ISAL_PATCH_VERSION)},
      {"zlib", zlibVersion()},
      {"libarchive", WithoutPrefix(archive_version_string(), "libarchive ")},
      {"openssl", WithoutPrefix(OpenSSL_version(OPENSSL_VERSION), "OpenSSL ")},
      {"sqlite", sqlite3_libversion()},
      {"spdlog", absl::StrCat(SPDLOG_VER_MAJOR, ".", SPDLOG_VER_MINOR, ".", SPDLOG_VER_PATCH)},
      {"tomlplusplus", absl::StrCat(TOML_LIB_MAJOR, ".", TOML_LIB_MINOR, ".", TOML_LIB_PATCH)},
  };
  return info;
}

std::string FormatBuildInfo(const BuildInfo& info) {
  std::string out = absl::StrCat("zsnap ", info.version, "\n");
  absl::StrAppend(&out, "  commit:     ", info.git_commit, "\n");
  absl::StrAppend(&out, "  build type: ", info.build_type,
                  info.sanitize.empty() ? "" : absl::StrCat(" (sanitize=", info.sanitize, ")"),
                  "\n");
  absl::StrAppend(&out, "  compiler:   ", info.compiler, "\n");
  absl::StrAppend(&out, "  system:     ", info.system, "\n");
  absl::StrAppend(&out, "  libraries:\n");
  for (const auto& [name, version] : info.libraries) {
    absl::StrAppend(&out, "    ", name, std::string(14 - std::min<size_t>(name.size(), 13), ' '),
                    version, "\n");
  }
  return out;
}

nlohmann::json BuildInfoJson(const BuildInfo& info) {
  nlohmann::json libraries = nlohmann::json::object();
  for (const auto& [name, version] : info.libraries) libraries[name] = version;
  return {
      {"version", info.version},       {"git_commit", info.git_commit}, {"compiler", info.compiler},
      {"build_type", info.build_type}, {"system", info.system},         {"sanitize", info.sanitize},
      {"libraries", libraries},
  };
}

}  // namespace zsnap::plugin
