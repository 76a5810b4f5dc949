#include "unpack/registry_blob_source.h"

#include <algorithm>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace zsnap::unpack {
namespace {

struct ContentRange {
  uint64_t start = 0;
  uint64_t end = 0;
  std::optional<uint64_t> total;
};

// "bytes <start>-<end>/<total|*>" (RFC 9110 §14.4).
std::optional<ContentRange> ParseContentRange(absl::string_view v) {
  if (!absl::ConsumePrefix(&v, "bytes ")) return std::nullopt;
  size_t dash = v.find('-');
  size_t slash = v.find('/');
  if (dash == absl::string_view::npos || slash == absl::string_view::npos || dash > slash) {
    return std::nullopt;
  }
  ContentRange r;
  if (!absl::SimpleAtoi(v.substr(0, dash), &r.start) ||
      !absl::SimpleAtoi(v.substr(dash + 1, slash - dash - 1), &r.end) || r.end < r.start) {
    return std::nullopt;
  }
  absl::string_view total = v.substr(slash + 1);
  if (total != "*") {
    uint64_t t = 0;
    if (!absl::SimpleAtoi(total, &t)) return std::nullopt;
    r.total = t;
  }
  return r;
}

}  // namespace

RegistryBlobSource::RegistryBlobSource(RegistryClient& client, Reference ref, std::string digest,
                                       std::optional<uint64_t> expected_size, RetryPolicy retry)
    : client_(client),
      ref_(std::move(ref)),
      digest_(std::move(digest)),
      size_(expected_size),
      retry_(retry) {}

std::string RegistryBlobSource::Name() const {
  return absl::StrCat("blob ", ref_.registry, "/", ref_.repository, "@", digest_);
}

absl::Status RegistryBlobSource::Open() { return Request(); }

absl::Status RegistryBlobSource::Request() {
  std::optional<uint64_t> start;
  if (offset_ > 0) start = offset_;
  absl::StatusOr<std::unique_ptr<HttpResponse>> r =
      client_.Fetch(ref_, absl::StrCat("/blobs/", digest_), kCapabilityPull, {}, start);
  if (!r.ok()) return r.status();
  HttpResponse& response = **r;
  std::optional<uint64_t> length = response.content_length();
  auto check_total = [&](uint64_t total) -> absl::Status {
    if (size_ && *size_ != total) {
      return absl::DataLossError(
          absl::StrCat(Name(), ": server says ", total, " bytes, descriptor says ", *size_));
    }
    size_ = total;
    return absl::OkStatus();
  };

  if (response.status() == 206) {
    std::optional<ContentRange> range;
    if (auto v = response.Header("Content-Range")) range = ParseContentRange(*v);
    if (!range || range->start != offset_) {
      return absl::FailedPreconditionError(absl::StrCat(
          Name(), ": cannot resume at byte ", offset_, ": server answered Content-Range \"",
          response.Header("Content-Range").value_or(""), "\""));
    }
    if (range->total) {
      if (absl::Status s = check_total(*range->total); !s.ok()) return s;
    }
  } else {
    if (length) {
      if (absl::Status s = check_total(*length); !s.ok()) return s;
    }
    // The server ignored Range: skip what the caller already has, as containerd does.
    std::byte scratch[16 * 1024];
    for (uint64_t skipped = 0; skipped < offset_;) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof scratch, offset_ - skipped));
      absl::StatusOr<size_t> n = response.ReadBody(std::span<std::byte>(scratch, want));
      if (!n.ok()) return n.status();
      if (*n == 0) {
        return absl::UnavailableError(
            absl::StrCat(Name(), ": body ended at ", skipped, " while skipping to ", offset_));
      }
      skipped += *n;
    }
  }
  response_ = *std::move(r);
  return absl::OkStatus();
}

absl::StatusOr<size_t> RegistryBlobSource::Read(std::span<std::byte> buf) {
  if (buf.empty()) return 0;
  for (;;) {
    absl::Status failure;
    if (response_ == nullptr) {
      // Request() has its own host rounds and backoff; its failure is final.
      if (absl::Status s = Request(); !s.ok()) return s;
    }
    absl::StatusOr<size_t> n = response_->ReadBody(buf);
    if (n.ok() && *n > 0) {
      offset_ += *n;
      failures_ = 0;
      if (size_ && offset_ > *size_) {
        return absl::DataLossError(
            absl::StrCat(Name(), ": more than the expected ", *size_, " bytes"));
      }
      return *n;
    }
    if (n.ok()) {
      if (!size_ || offset_ == *size_) return 0;
      failure = absl::UnavailableError(
          absl::StrCat(Name(), ": body ended at byte ", offset_, " of ", *size_));
    } else {
      failure = n.status();
    }
    response_.reset();
    if (!absl::IsUnavailable(failure)) return failure;
    if (++failures_ > retry_.max_attempts) {
      return absl::UnavailableError(absl::StrCat(Name(), ": giving up at byte ", offset_, " after ",
                                                 retry_.max_attempts,
                                                 " resumes without progress: ", failure.message()));
    }
    if (failures_ > 1) {
      auto delay = std::min<std::chrono::milliseconds>(
          retry_.initial_backoff * (1LL << std::min(failures_ - 2, 16)), retry_.max_backoff);
      std::this_thread::sleep_for(delay);
    }
    ++resumes_;
  }
}

}  // namespace zsnap::unpack
