// FileSource: a ByteSource over a file descriptor: a layer blob in the content store, a
// path given on the command line, or stdin ("-", as a containerd stream processor gets it).
//
// Ownership: Open() owns the descriptor it opens; FromFd() borrows one (the caller closes).
// Thread safety: one reader at a time.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "unpack/unpack.h"

namespace zsnap::unpack {

class FileSource final : public ByteSource {
 public:
  // Opens `path` read-only ("-" is stdin, borrowed).
  static absl::StatusOr<std::unique_ptr<FileSource>> Open(const std::string& path);
  // Reads from `fd` without taking ownership; `name` is used in error messages.
  static std::unique_ptr<FileSource> FromFd(int fd, std::string name);

  ~FileSource() override;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  absl::StatusOr<size_t> Read(std::span<std::byte> buf) override;

 private:
  FileSource(int fd, bool owned, std::string name)
      : fd_(fd), owned_(owned), name_(std::move(name)) {}

  int fd_;
  bool owned_;
  std::string name_;
};

}  // namespace zsnap::unpack
