#include "unpack/digest.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace zsnap::unpack {
namespace {

constexpr std::string_view kPrefix = "sha256:";

// A failing EVP call on a fixed, built-in algorithm means a broken OpenSSL install: an
// invariant, not input, so abort rather than return.
void Check(int ok, const char* what) {
  if (ok != 1) {
    std::fprintf(stderr, "zsnap: OpenSSL %s failed\n", what);
    std::abort();
  }
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) Check(0, "EVP_MD_CTX_new");
  Check(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr), "EVP_DigestInit_ex(sha256)");
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Update(std::span<const std::byte> data) {
  if (data.empty()) return;
  Check(EVP_DigestUpdate(ctx_, data.data(), data.size()), "EVP_DigestUpdate");
}

std::string Sha256::Finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  Check(EVP_DigestFinal_ex(ctx_, md, &len), "EVP_DigestFinal_ex");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kPrefix);
  out.reserve(kPrefix.size() + 2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

std::string Sha256Digest(std::span<const std::byte> data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

absl::StatusOr<std::string> ParseDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid digest \"", std::string(digest),
                                                   "\": want \"sha256:<64 hex digits>\""));
  }
  std::string_view algorithm = digest.substr(0, colon);
  std::string_view encoded = digest.substr(colon + 1);
  if (algorithm != "sha256") {
    return absl::InvalidArgumentError(absl::StrCat("unsupported digest algorithm \"",
                                                   std::string(algorithm), "\" in \"",
                                                   std::string(digest), "\": only sha256"));
  }
  bool hex = encoded.size() == 64;
  for (char c : encoded) hex = hex && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!hex) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", std::string(digest),
                     "\": encoded part must be 64 lowercase hex digits"));
  }
  return std::string(digest);
}

}  // namespace zsnap::unpack
