#include "unpack/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace zsnap::unpack {
namespace {

class Timer {
 public:
  explicit Timer(double& sum) : sum_(sum), start_(std::chrono::steady_clock::now()) {}
  ~Timer() {
    sum_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  double& sum_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

TarReader::TarReader(ChunkSource& source, std::stop_token stop)
    : source_(source), stop_(std::move(stop)) {
  // Before archive_read_new(): libarchive may note the locale's charset when created.
  utf8_ = newlocale(LC_CTYPE_MASK, "C.UTF-8", nullptr);
  if (utf8_ != nullptr) saved_locale_ = uselocale(utf8_);
  archive_ = archive_read_new();
  if (archive_ == nullptr) {
    open_status_ = absl::ResourceExhaustedError("archive_read_new: out of memory");
    return;
  }
  // Only the tar family; deliberately no filters (the pipeline decodes) and no other
  // formats, so nothing else in libarchive sees untrusted input.
  int r = archive_read_support_format_tar(archive_);
  if (r == ARCHIVE_OK) {
    r = archive_read_open(archive_, this, nullptr, &TarReader::ReadCallback, nullptr);
  }
  if (r != ARCHIVE_OK) open_status_ = ArchiveError(r);
}

TarReader::~TarReader() {
  if (archive_ != nullptr) archive_read_free(archive_);
  if (utf8_ != nullptr) {
    uselocale(saved_locale_);
    freelocale(utf8_);
  }
}

long TarReader::ReadCallback(struct archive* a, void* self, const void** buffer) {
  auto* r = static_cast<TarReader*>(self);
  if (r->stop_.stop_requested()) {
    r->source_status_ = absl::CancelledError("extraction cancelled");
  } else {
    absl::StatusOr<std::span<const std::byte>> chunk;
    {
      Timer t(r->source_wait_s_);
      chunk = r->source_.Next();
    }
    if (chunk.ok()) {
      if (chunk->empty()) r->source_eof_ = true;
      *buffer = chunk->data();
      return static_cast<long>(chunk->size());
    }
    r->source_status_ = chunk.status();
  }
  archive_set_error(a, EIO, "%s", r->source_status_.ToString().c_str());
  return -1;
}

absl::Status TarReader::ArchiveError(int r) {
  if (!source_status_.ok()) return source_status_;
  if (stop_.stop_requested()) return absl::CancelledError("extraction cancelled");
  const char* msg = archive_error_string(archive_);
  std::string what = msg != nullptr ? msg : absl::StrCat("libarchive error ", r);
  if (source_eof_) return absl::DataLossError(absl::StrCat("truncated tar stream: ", what));
  return absl::InvalidArgumentError(absl::StrCat("malformed tar stream: ", what));
}

absl::StatusOr<bool> TarReader::Next() {
  if (!open_status_.ok()) return open_status_;
  Timer t(busy_s_);
  int r = archive_read_next_header(archive_, &entry_);
  if (r == ARCHIVE_EOF) return false;
  if (r == ARCHIVE_WARN) {
    // A name that is not valid UTF-8 in a PAX record: libarchive keeps the raw bytes, which
    // is what Go's archive/tar does too. Any other warning (a malformed PAX record libarchive
    // skipped) means half a header: refuse it.
    const char* msg = archive_error_string(archive_);
    if (msg != nullptr && std::strstr(msg, "can't be converted") != nullptr) return true;
  }
  if (r != ARCHIVE_OK) return ArchiveError(r);
  return true;
}

absl::StatusOr<bool> TarReader::ReadBlock(std::span<const std::byte>& data, uint64_t& offset) {
  Timer t(busy_s_);
  const void* buf = nullptr;
  size_t size = 0;
  la_int64_t off = 0;
  int r = archive_read_data_block(archive_, &buf, &size, &off);
  if (r == ARCHIVE_EOF) return false;
  if (r != ARCHIVE_OK) return ArchiveError(r);
  data = {static_cast<const std::byte*>(buf), size};
  offset = static_cast<uint64_t>(off);
  return true;
}

absl::Status TarReader::Drain() {
  Timer busy(busy_s_);
  while (!source_eof_) {
    absl::StatusOr<std::span<const std::byte>> chunk;
    {
      Timer t(source_wait_s_);
      chunk = source_.Next();
    }
    if (!chunk.ok()) return chunk.status();
    if (chunk->empty()) source_eof_ = true;
  }
  return absl::OkStatus();
}

}  // namespace zsnap::unpack
