// Small helpers for the registry tests: temp dirs, files, SHA-256, random bytes and draining
// a ByteSource.
#pragma once

#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "unpack/unpack.h"

namespace zsnap::unpack {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "zsnap-registry-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << "writing " << path;
}

inline void WriteExecutable(const std::string& path, std::string_view content) {
  WriteFile(path, content);
  chmod(path.c_str(), 0755);
}

inline std::string Sha256Of(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

inline std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// Reads `source` to the end with an odd buffer size (so reads straddle cuts and chunks).
inline absl::StatusOr<std::string> Drain(ByteSource& source, size_t buffer = 7777) {
  std::string out;
  std::string buf(buffer, '\0');
  for (;;) {
    absl::StatusOr<size_t> n =
        source.Read(std::span<std::byte>(reinterpret_cast<std::byte*>(buf.data()), buf.size()));
    if (!n.ok()) return n.status();
    if (*n == 0) return out;
    out.append(buf.data(), *n);
  }
}

}  // namespace zsnap::unpack
