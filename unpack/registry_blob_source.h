// A registry blob as a ByteSource: the HTTP body is read straight into the caller's buffer;
// a connection that breaks mid-body is resumed with `Range: bytes=<offset>-` (206 with a
// Content-Range that starts at the offset; a 200 is skipped forward to the offset), with
// bounded retries and backoff, so the caller sees every byte exactly once or an error.
//
// Internal to RegistryClient (registry_client.h), which creates it through GetBlob and must
// outlive it. Used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "unpack/registry_client.h"

namespace zsnap::unpack {

class RegistryBlobSource final : public ByteSource {
 public:
  RegistryBlobSource(RegistryClient& client, Reference ref, std::string digest,
                     std::optional<uint64_t> expected_size, RetryPolicy retry);

  // Issues the first request; NotFound / Unauthenticated / … as RegistryClient documents.
  absl::Status Open();

  absl::StatusOr<size_t> Read(std::span<std::byte> buf) override;

  uint64_t offset() const { return offset_; }
  int resumes() const { return resumes_; }
  int retries() const override { return resumes_; }

 private:
  // (Re)requests the blob from offset_ and positions the body there.
  absl::Status Request();
  std::string Name() const;

  RegistryClient& client_;
  Reference ref_;
  std::string digest_;
  std::optional<uint64_t> size_;  // expected total, from the descriptor or Content-Length
  RetryPolicy retry_;
  std::unique_ptr<HttpResponse> response_;
  uint64_t offset_ = 0;
  int failures_ = 0;  // consecutive resumes without progress
  int resumes_ = 0;
};

}  // namespace zsnap::unpack
