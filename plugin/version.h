// `zsnap version`: what was built, from which commit, with which compiler and libraries.
//
// Compile-time facts come from a header CMake generates at configure time
// (plugin/build_info.h.in: project version, `git rev-parse` of the checkout, compiler, build
// type). Library versions are asked from the linked library at run time where it has an API for
// it (gRPC, zstd, zlib, libarchive, OpenSSL, SQLite), so a binary run against a newer shared
// library reports what it really uses; header-only or API-less ones (protobuf, Abseil, ISA-L,
// spdlog, toml++) report the headers it was built with.
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace zsnap::plugin {

struct BuildInfo {
  std::string version;     // CMake project() version, e.g. 0.1.0
  std::string git_commit;  // short hash, "-dirty" if the tree had changes; "unknown" without git
  std::string compiler;    // e.g. GNU 12.2.0
  std::string build_type;  // e.g. RelWithDebInfo
  std::string system;      // e.g. Linux x86_64
  std::string sanitize;    // "", "address" or "thread"
  // (name, version) in a fixed order.
  std::vector<std::pair<std::string, std::string>> libraries;
};

BuildInfo GetBuildInfo();

// Multi-line text: "zsnap 0.1.0 (commit abc, RelWithDebInfo)" and one line per fact.
std::string FormatBuildInfo(const BuildInfo& info);

// {"version": ..., "git_commit": ..., ..., "libraries": {"grpc": "1.51.1", ...}}
nlohmann::json BuildInfoJson(const BuildInfo& info);

}  // namespace zsnap::plugin
