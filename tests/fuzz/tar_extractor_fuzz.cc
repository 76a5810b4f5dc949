// libFuzzer target for ExtractTar: arbitrary bytes as a decoded layer, extracted into a fresh
// scratch directory. Besides crashes and sanitizer reports it checks the one property that
// matters most: nothing outside the destination changes (a sentinel sibling directory is
// compared after every input). The first input byte picks the chunk size, so libarchive's
// read-callback boundaries move around.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>

#include "unpack/tar_extractor.h"

namespace {

class BytesSource : public zsnap::unpack::ChunkSource {
 public:
  BytesSource(std::span<const std::byte> data, size_t chunk) : data_(data), chunk_(chunk) {}
  absl::StatusOr<std::span<const std::byte>> Next() override {
    size_t n = std::min(chunk_, data_.size() - pos_);
    auto out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

 private:
  std::span<const std::byte> data_;
  size_t chunk_;
  size_t pos_ = 0;
};

struct Scratch {
  std::string base, dest, sentinel;
  struct stat sentinel_st;
  Scratch() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "zsnap-tar-fuzz-XXXXXX").string();
    base = mkdtemp(tmpl.data());
    dest = base + "/dest";
    sentinel = base + "/sentinel";
    std::filesystem::create_directory(sentinel);
    std::FILE* f = std::fopen((sentinel + "/file").c_str(), "w");
    std::fputs("sentinel", f);
    std::fclose(f);
    stat(sentinel.c_str(), &sentinel_st);
  }
  void CheckSentinel() const {
    struct stat st;
    size_t entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(sentinel)) ++entries;
    if (stat(sentinel.c_str(), &st) != 0 || st.st_mtim.tv_nsec != sentinel_st.st_mtim.tv_nsec ||
        st.st_mtim.tv_sec != sentinel_st.st_mtim.tv_sec || entries != 1 ||
        std::filesystem::file_size(sentinel + "/file") != 8) {
      std::fprintf(stderr, "extraction escaped its destination\n");
      std::abort();
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Scratch scratch;
  if (size == 0) return 0;
  const size_t chunk = 1 + static_cast<size_t>(data[0]) * 37;
  std::span<const std::byte> tar(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  std::error_code ec;
  std::filesystem::remove_all(scratch.dest, ec);
  std::filesystem::create_directory(scratch.dest);
  BytesSource source(tar, chunk);
  zsnap::unpack::ExtractOptions options;
  options.max_entries = 1000;
  options.writer_threads = (data[0] & 1) != 0 ? 2 : 1;
  (void)zsnap::unpack::ExtractTar(source, scratch.dest, options);
  scratch.CheckSentinel();
  return 0;
}
