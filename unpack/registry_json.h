// Defensive parsers for the JSON a registry serves: image manifests, indexes (manifest lists)
// and error bodies, plus the helpers the image config parser (image_source.h) shares.
//
// Everything here treats its input as hostile: documents are size- and depth-bounded before
// they are built, every field is read through a typed accessor that returns a Status (never
// nlohmann's throwing value()/get<>()), and text copied from a registry into a message is
// truncated and escaped. Type rules follow Go's encoding/json as containerd uses it: a field
// that is null is the same as a missing one (`"mediaType": null` is ""), a field of another
// JSON type is InvalidArgument ("size" must be a non-negative integer, "12" is refused).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "unpack/registry_client.h"

namespace zsnap::unpack {

// An error body is only read for its message; the rest is not worth the memory.
inline constexpr size_t kMaxErrorBodyBytes = 4096;
// Nesting beyond this is refused before a DOM is built (manifests nest 4 levels deep).
inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as one JSON document of at most kMaxJsonDepth levels; InvalidArgument
// naming `what` otherwise. Never throws.
absl::StatusOr<nlohmann::json> ParseBoundedJson(std::string_view text, std::string_view what);

struct IndexEntry {
  Descriptor descriptor;
  bool has_platform = false;
  Platform platform;
};

// A manifest or an index, as parsed (not yet resolved to a platform).
struct ParsedManifest {
  std::string media_type;  // from "mediaType", else the Content-Type, else guessed
  bool is_index = false;
  Descriptor config;                // image manifest only
  std::vector<Descriptor> layers;   // image manifest only
  std::vector<IndexEntry> manifests;  // index only
};

// Parses the bytes of a manifest or index served with `content_type` (parameters stripped).
// InvalidArgument for malformed JSON or wrong field types, Unimplemented for schema 1.
// `where` prefixes every message ("manifest reg/repo@tag").
absl::StatusOr<ParsedManifest> ParseManifestJson(std::string_view bytes,
                                                 std::string_view content_type,
                                                 std::string_view where);

// The error body of a registry reply (`{"errors":[{"code","message"}]}`, a single error
// object, or `{"details": …}`, as containerd remotes/docker/errcode.go Errors.UnmarshalJSON
// accepts) as one short escaped line, e.g. "manifest unknown: manifest unknown"; empty when
// the body says nothing usable.
std::string RegistryErrorText(std::string_view body);

// Text from a remote peer made safe for a log line or a Status message: cut to `max_bytes`
// (with "..." appended when cut), control bytes, non-ASCII, quotes and backslashes escaped.
std::string SanitizeRemoteText(std::string_view text, size_t max_bytes = 256);

}  // namespace zsnap::unpack
