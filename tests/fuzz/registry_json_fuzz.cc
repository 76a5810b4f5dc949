// libFuzzer: every JSON document a registry or the node feeds zsnap — image manifests and
// indexes (ParseManifestJson, under each Content-Type zsnap accepts), registry error bodies
// (RegistryErrorText), image configs (ParseDiffIds) and docker config.json
// (DockerCredentials::Parse). The first byte picks the parser and the Content-Type; the rest
// is the document. Besides sanitizer reports, a parser that throws (nlohmann's type_error on
// a field of the wrong JSON type killed the daemon, issue 11) aborts the run: libFuzzer
// reports an uncaught exception as a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "unpack/docker_credentials.h"
#include "unpack/image_source.h"
#include "unpack/registry_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static constexpr std::string_view kTypes[] = {
      "", "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
      "application/vnd.docker.distribution.manifest.v2+json",
      "application/vnd.docker.distribution.manifest.list.v2+json", "application/json"};
  const uint8_t selector = data[0];
  const std::string_view doc(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (selector % 4) {
    case 0: {
      auto m = zsnap::unpack::ParseManifestJson(doc, kTypes[(selector / 4) % 6], "fuzz");
      if (m.ok() && !m->is_index && m->media_type.empty()) std::abort();  // always decided
      break;
    }
    case 1: {
      std::string text = zsnap::unpack::RegistryErrorText(doc);
      // One escaped line: a registry must not be able to write a newline into a log.
      if (text.find('\n') != std::string::npos || text.find('\r') != std::string::npos) {
        std::abort();
      }
      break;
    }
    case 2:
      (void)zsnap::unpack::ParseDiffIds(doc);
      break;
    case 3:
      (void)zsnap::unpack::DockerCredentials::Parse(doc);
      break;
  }
  return 0;
}
