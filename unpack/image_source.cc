#include "unpack/image_source.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "unpack/digest.h"

namespace zsnap::unpack {
namespace {

std::span<const std::byte> Bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseDiffIds(std::string_view config_json) {
  nlohmann::json j = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("image config is not a JSON object");
  }
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object()) {
    return absl::InvalidArgumentError("image config has no rootfs");
  }
  auto type = rootfs->find("type");
  if (type == rootfs->end() || !type->is_string() || type->get<std::string>() != "layers") {
    return absl::InvalidArgumentError("image config rootfs.type is not \"layers\"");
  }
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) {
    return absl::InvalidArgumentError("image config has no rootfs.diff_ids");
  }
  std::vector<std::string> out;
  for (const nlohmann::json& id : *ids) {
    if (!id.is_string()) return absl::InvalidArgumentError("image config diff_id is not a string");
    absl::StatusOr<std::string> d = ParseDigest(id.get<std::string>());
    if (!d.ok()) return d.status();
    out.push_back(*std::move(d));
  }
  return out;
}

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  out.reserve(diff_ids.size());
  for (const std::string& d : diff_ids) {
    if (out.empty()) {
      out.push_back(d);
    } else {
      out.push_back(Sha256Digest(Bytes(absl::StrCat(out.back(), " ", d))));
    }
  }
  return out;
}

absl::StatusOr<ImageInfo> MakeImageInfo(const Reference& ref, Manifest manifest,
                                        std::string_view config_json) {
  std::string config_digest = Sha256Digest(Bytes(config_json));
  if (config_digest != manifest.config.digest) {
    return absl::DataLossError(absl::StrCat("image config of ", ref.String(), " has digest ",
                                            config_digest, ", manifest says ",
                                            manifest.config.digest));
  }
  absl::StatusOr<std::vector<std::string>> diff_ids = ParseDiffIds(config_json);
  if (!diff_ids.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ref.String(), ": ", diff_ids.status().message()));
  }
  if (diff_ids->size() != manifest.layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat(ref.String(), ": manifest has ",
                                                   manifest.layers.size(), " layers, config ",
                                                   diff_ids->size(), " diff_ids"));
  }
  ImageInfo info;
  info.ref = ref;
  info.chain_ids = ChainIds(*diff_ids);
  info.diff_ids = *std::move(diff_ids);
  info.manifest = std::move(manifest);
  return info;
}

absl::StatusOr<ImageInfo> RegistryImageSource::Resolve(const Reference& ref) {
  if (ref.digest.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image ", ref.String(), " is not pinned by digest"));
  }
  absl::StatusOr<Manifest> manifest = client_.GetManifest(ref);
  if (!manifest.ok()) return manifest.status();
  if (manifest->digest != ref.digest) {
    // An index: containerd's label names the platform manifest, so this is not one we want.
    return absl::InvalidArgumentError(absl::StrCat(ref.String(), " is an index, not a manifest"));
  }
  absl::StatusOr<std::string> config = client_.FetchBlobToString(ref, manifest->config.digest);
  if (!config.ok()) return config.status();
  return MakeImageInfo(ref, *std::move(manifest), *config);
}

absl::StatusOr<std::unique_ptr<ByteSource>> RegistryImageSource::OpenBlob(
    const Reference& ref, const Descriptor& layer) {
  return client_.GetBlob(ref, layer.digest, layer.size);
}

}  // namespace zsnap::unpack
