// Test helpers for the tar extractor tests: an in-memory ChunkSource with configurable chunk
// sizes, a scratch directory with a sentinel sibling of the destination, and a tree snapshot
// to prove nothing outside the destination changed. Test code only; not thread-safe.
#pragma once

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "unpack/tar_extractor.h"

namespace zsnap::unpack::testing {

// Serves `data` in chunks whose sizes cycle through `sizes`.
class StringSource : public ChunkSource {
 public:
  StringSource(std::string data, std::vector<size_t> sizes)
      : data_(std::move(data)), sizes_(std::move(sizes)) {}
  absl::StatusOr<std::span<const std::byte>> Next() override {
    ++calls_;
    if (!error_.ok() && pos_ >= fail_at_) return error_;
    size_t n = std::min(sizes_[next_++ % sizes_.size()], data_.size() - pos_);
    std::span<const std::byte> out(reinterpret_cast<const std::byte*>(data_.data()) + pos_, n);
    pos_ += n;
    return out;
  }
  // Fails with `error` once `offset` bytes have been served.
  void FailAt(size_t offset, absl::Status error) {
    fail_at_ = offset;
    error_ = std::move(error);
  }
  size_t served() const { return pos_; }

 private:
  std::string data_;
  std::vector<size_t> sizes_;
  size_t next_ = 0;
  size_t pos_ = 0;
  size_t calls_ = 0;
  size_t fail_at_ = 0;
  absl::Status error_;
};

inline bool IsRoot() { return geteuid() == 0; }

#define ZSNAP_REQUIRE_ROOT()                                                         \
  do {                                                                               \
    if (!::zsnap::unpack::testing::IsRoot()) {                                       \
      GTEST_SKIP() << "SKIPPED LOUDLY: needs root (chown, mknod, trusted.* xattrs)"; \
    }                                                                                \
  } while (0)

// <tmp>/zsnap-tar-XXXXXX/{dest,outside/secret}
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "zsnap-tar-XXXXXX").string();
    base_ = mkdtemp(tmpl.data());
    std::filesystem::create_directory(dest());
    std::filesystem::create_directory(outside());
    std::ofstream(outside() + "/secret") << "s3cret";
    std::filesystem::create_directory(outside() + "/sub");
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
  }
  const std::string& base() const { return base_; }
  std::string dest() const { return base_ + "/dest"; }
  std::string outside() const { return base_ + "/outside"; }
  std::string d(const std::string& rel) const { return dest() + "/" + rel; }

 private:
  std::string base_;
};

// One line per path below `root`: type, mode, owner, size, mtime, content or link target.
inline std::string Snapshot(const std::string& root) {
  std::ostringstream out;
  namespace fs = std::filesystem;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    struct stat st;
    lstat(it->path().c_str(), &st);
    out << it->path().string() << " mode=" << std::oct << st.st_mode << std::dec
        << " uid=" << st.st_uid << " gid=" << st.st_gid << " size=" << st.st_size
        << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec << " nlink=" << st.st_nlink;
    if (S_ISREG(st.st_mode)) {
      std::ifstream f(it->path());
      out << " data=" << std::string(std::istreambuf_iterator<char>(f), {});
    } else if (S_ISLNK(st.st_mode)) {
      out << " -> " << fs::read_symlink(it->path()).string();
    }
    out << "\n";
  }
  return out.str();
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline struct stat Lstat(const std::string& path) {
  struct stat st = {};
  if (lstat(path.c_str(), &st) != 0) st.st_mode = 0;
  return st;
}

inline std::string Xattr(const std::string& path, const char* key) {
  char buf[4096];
  ssize_t n = lgetxattr(path.c_str(), key, buf, sizeof(buf));
  return n < 0 ? std::string("<none>") : std::string(buf, static_cast<size_t>(n));
}

inline absl::StatusOr<ExtractStats> Extract(const std::string& tar, const std::string& dest,
                                            ExtractOptions options = {},
                                            std::vector<size_t> chunks = {64 << 10}) {
  StringSource source(tar, std::move(chunks));
  return ExtractTar(source, dest, options);
}

}  // namespace zsnap::unpack::testing
