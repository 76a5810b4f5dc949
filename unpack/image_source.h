// ImageSource: what the remote path needs to know about an image and where its layer bytes
// come from — the manifest pinned by digest, the diffIDs from its config, and a stream per
// layer blob. RegistryImageSource serves it from a registry (registry_client.h); tests serve
// it from memory.
//
// Thread safety: implementations are called concurrently from many threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "unpack/registry_client.h"
#include "unpack/unpack.h"

namespace zsnap::unpack {

struct ImageInfo {
  Reference ref;  // ref.digest = the manifest digest
  Manifest manifest;
  std::vector<std::string> diff_ids;   // one per manifest layer, from the config
  std::vector<std::string> chain_ids;  // ChainIds(diff_ids)
};

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // The image manifest `ref` names by digest (ref.digest non-empty), verified, with its
  // config's diffIDs. InvalidArgument when the config and the manifest disagree.
  virtual absl::StatusOr<ImageInfo> Resolve(const Reference& ref) = 0;
  // The compressed bytes of `layer` (unverified; the unpack pipeline checks the digest).
  virtual absl::StatusOr<std::unique_ptr<ByteSource>> OpenBlob(const Reference& ref,
                                                               const Descriptor& layer) = 0;
};

// rootfs.diff_ids of an OCI/Docker image config. InvalidArgument when missing, not
// "layers" typed, or a digest is malformed.
absl::StatusOr<std::vector<std::string>> ParseDiffIds(std::string_view config_json);

// OCI image-spec chain IDs: ChainID(L0) = DiffID(L0),
// ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)).
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

// Resolves `manifest` + `config_json` (already fetched) into an ImageInfo; checks the config
// digest, the layer count and the layer media types.
absl::StatusOr<ImageInfo> MakeImageInfo(const Reference& ref, Manifest manifest,
                                        std::string_view config_json);

class RegistryImageSource final : public ImageSource {
 public:
  explicit RegistryImageSource(RegistryClient& client) : client_(client) {}

  absl::StatusOr<ImageInfo> Resolve(const Reference& ref) override;
  absl::StatusOr<std::unique_ptr<ByteSource>> OpenBlob(const Reference& ref,
                                                       const Descriptor& layer) override;

 private:
  RegistryClient& client_;
};

}  // namespace zsnap::unpack
