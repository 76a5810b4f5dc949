// SHA-256 digests in OCI form ("sha256:<64 lowercase hex>"): an incremental hasher over
// OpenSSL EVP (SHA-NI/AVX2 where the CPU has them) and parsing of expected digests.
//
// Thread safety: a Sha256 is used by one thread at a time; the free functions are pure.
#pragma once

#include <openssl/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace zsnap::unpack {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::span<const std::byte> data);
  // "sha256:<hex>" of everything passed to Update. The hasher is spent afterwards.
  std::string Finish();

 private:
  EVP_MD_CTX* ctx_;
};

// "sha256:<hex>" of `data` in one call.
std::string Sha256Digest(std::span<const std::byte> data);

// Validates an OCI digest and returns it unchanged. Only sha256 is supported; the encoded
// part must be 64 lowercase hex digits (OCI image-spec descriptor.md). InvalidArgument
// otherwise, naming the offending string.
absl::StatusOr<std::string> ParseDigest(std::string_view digest);

}  // namespace zsnap::unpack
