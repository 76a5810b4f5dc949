#include "unpack/registry_json.h"

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "unpack/digest.h"

namespace zsnap::unpack {
namespace {

using Json = nlohmann::json;

absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
constexpr char kDockerList[] = "application/vnd.docker.distribution.manifest.list.v2+json";

// A SAX pass that only checks nesting: it stops at kMaxJsonDepth before anything is built,
// so "[[[[…" of 4 MiB costs no memory.
class DepthCheck final : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return Enter(); }
  bool key(string_t&) override { return true; }
  bool end_object() override { return Leave(); }
  bool start_array(std::size_t) override { return Enter(); }
  bool end_array() override { return Leave(); }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception&) override {
    error = absl::StrCat("not JSON (at byte ", position, ")");
    return false;
  }

  std::string error;

 private:
  bool Enter() {
    if (++depth_ > kMaxJsonDepth) {
      error = absl::StrCat("nested deeper than ", kMaxJsonDepth, " levels");
      return false;
    }
    return true;
  }
  bool Leave() {
    --depth_;
    return true;
  }
  int depth_ = 0;
};

absl::Status Bad(std::string_view where, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(ToAbsl(where), ": ", ToAbsl(why)));
}

// Go's encoding/json message, shortened: json: cannot unmarshal number into … of type string.
absl::Status WrongType(std::string_view where, std::string_view key, const Json& v,
                       std::string_view want) {
  return Bad(where, absl::StrCat("cannot unmarshal ", v.type_name(), " into field \"",
                                 ToAbsl(key), "\" of type ", ToAbsl(want)));
}

// The member `key` of object `obj`, or nullptr when it is missing or null (Go leaves the
// field at its zero value then).
const Json* Member(const Json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::string> OptString(const Json& obj, std::string_view key,
                                      std::string_view where) {
  const Json* v = Member(obj, key);
  if (v == nullptr) return std::string();
  if (!v->is_string()) return WrongType(where, key, *v, "string");
  return v->get<std::string>();
}

absl::StatusOr<std::optional<int64_t>> OptInt(const Json& obj, std::string_view key,
                                              std::string_view where) {
  const Json* v = Member(obj, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return WrongType(where, key, *v, "int64");
    return static_cast<int64_t>(u);
  }
  if (v->is_number_integer()) return v->get<int64_t>();
  return WrongType(where, key, *v, "int64");
}

absl::StatusOr<std::vector<std::string>> OptStringArray(const Json& obj, std::string_view key,
                                                        std::string_view where) {
  std::vector<std::string> out;
  const Json* v = Member(obj, key);
  if (v == nullptr) return out;
  if (!v->is_array()) return WrongType(where, key, *v, "[]string");
  for (const Json& e : *v) {
    if (!e.is_string()) return WrongType(where, key, e, "string");
    out.push_back(e.get<std::string>());
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> OptStringMap(const Json& obj,
                                                                std::string_view key,
                                                                std::string_view where) {
  std::map<std::string, std::string> out;
  const Json* v = Member(obj, key);
  if (v == nullptr) return out;
  if (!v->is_object()) return WrongType(where, key, *v, "map[string]string");
  for (const auto& [k, e] : v->items()) {
    if (!e.is_string()) return WrongType(where, key, e, "string");
    out[k] = e.get<std::string>();
  }
  return out;
}

absl::StatusOr<Descriptor> ParseDescriptor(const Json& j, std::string_view where) {
  if (!j.is_object()) return Bad(where, absl::StrCat("descriptor is a ", j.type_name()));
  Descriptor d;
  absl::StatusOr<std::string> media_type = OptString(j, "mediaType", where);
  if (!media_type.ok()) return media_type.status();
  d.media_type = *std::move(media_type);
  absl::StatusOr<std::string> digest = OptString(j, "digest", where);
  if (!digest.ok()) return digest.status();
  if (!ParseDigest(*digest).ok()) {
    return Bad(where, absl::StrCat("unsupported digest \"", SanitizeRemoteText(*digest, 80), "\""));
  }
  d.digest = *std::move(digest);
  absl::StatusOr<std::optional<int64_t>> size = OptInt(j, "size", where);
  if (!size.ok()) return size.status();
  // Stricter than Go (which reads a missing size as 0): a descriptor without a size cannot
  // bound its download.
  if (!size->has_value() || **size < 0) return Bad(where, "size missing or negative");
  d.size = static_cast<uint64_t>(**size);
  absl::StatusOr<std::vector<std::string>> urls = OptStringArray(j, "urls", where);
  if (!urls.ok()) return urls.status();
  d.urls = *std::move(urls);
  absl::StatusOr<std::map<std::string, std::string>> annotations =
      OptStringMap(j, "annotations", where);
  if (!annotations.ok()) return annotations.status();
  d.annotations = *std::move(annotations);
  return d;
}

absl::StatusOr<IndexEntry> ParseIndexEntry(const Json& j, std::string_view where) {
  absl::StatusOr<Descriptor> d = ParseDescriptor(j, where);
  if (!d.ok()) return d.status();
  IndexEntry entry;
  entry.descriptor = *std::move(d);
  const Json* p = Member(j, "platform");
  if (p == nullptr) return entry;
  if (!p->is_object()) return WrongType(where, "platform", *p, "Platform");
  std::string w = absl::StrCat(ToAbsl(where), " platform");
  for (auto [key, field] : {std::pair{"os", &entry.platform.os},
                            std::pair{"architecture", &entry.platform.architecture},
                            std::pair{"variant", &entry.platform.variant}}) {
    absl::StatusOr<std::string> v = OptString(*p, key, w);
    if (!v.ok()) return v.status();
    *field = *std::move(v);
  }
  entry.has_platform = true;
  return entry;
}

absl::StatusOr<const Json*> RequiredArray(const Json& obj, std::string_view key,
                                          std::string_view where, std::string_view missing) {
  const Json* v = Member(obj, key);
  if (v == nullptr) return Bad(where, missing);
  if (!v->is_array()) return WrongType(where, key, *v, "array");
  return v;
}

}  // namespace

absl::StatusOr<Json> ParseBoundedJson(std::string_view text, std::string_view what) {
  DepthCheck check;
  if (!Json::sax_parse(text, &check, nlohmann::json::input_format_t::json, /*strict=*/true)) {
    return Bad(what, check.error.empty() ? "not JSON" : check.error);
  }
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(what, "not JSON");
  return j;
}

absl::StatusOr<ParsedManifest> ParseManifestJson(std::string_view bytes,
                                                 std::string_view content_type,
                                                 std::string_view where) {
  absl::StatusOr<Json> parsed = ParseBoundedJson(bytes, where);
  if (!parsed.ok()) return parsed.status();
  const Json& j = *parsed;
  if (!j.is_object()) return Bad(where, absl::StrCat("manifest is a ", j.type_name()));
  absl::StatusOr<std::optional<int64_t>> schema = OptInt(j, "schemaVersion", where);
  if (!schema.ok()) return schema.status();
  if (*schema == 1) return absl::UnimplementedError(
      absl::StrCat(ToAbsl(where), ": schema 1 manifests are not supported"));
  absl::StatusOr<std::string> media_type = OptString(j, "mediaType", where);
  if (!media_type.ok()) return media_type.status();
  ParsedManifest out;
  // containerd images.Manifest/Children: the document's own mediaType, else what the
  // registry said; an empty one is guessed from the fields present.
  out.media_type = media_type->empty() ? std::string(content_type) : *media_type;
  if (out.media_type.empty()) out.media_type = j.contains("manifests") ? kOciIndex : kOciManifest;

  if (out.media_type == kOciIndex || out.media_type == kDockerList) {
    out.is_index = true;
    absl::StatusOr<const Json*> manifests =
        RequiredArray(j, "manifests", where, "index without manifests");
    if (!manifests.ok()) return manifests.status();
    for (size_t i = 0; i < (*manifests)->size(); ++i) {
      absl::StatusOr<IndexEntry> e =
          ParseIndexEntry((**manifests)[i], absl::StrCat(ToAbsl(where), " manifests[", i, "]"));
      if (!e.ok()) return e.status();
      out.manifests.push_back(*std::move(e));
    }
    return out;
  }
  if (out.media_type != kOciManifest && out.media_type != kDockerManifest) {
    return Bad(where, absl::StrCat("unsupported media type \"",
                                   SanitizeRemoteText(out.media_type, 128), "\""));
  }
  const Json* config = Member(j, "config");
  if (config == nullptr) return Bad(absl::StrCat(ToAbsl(where), " config"), "missing");
  absl::StatusOr<Descriptor> c = ParseDescriptor(*config, absl::StrCat(ToAbsl(where), " config"));
  if (!c.ok()) return c.status();
  out.config = *std::move(c);
  absl::StatusOr<const Json*> layers = RequiredArray(j, "layers", where, "no layers array");
  if (!layers.ok()) return layers.status();
  out.layers.reserve((*layers)->size());
  for (size_t i = 0; i < (*layers)->size(); ++i) {
    absl::StatusOr<Descriptor> layer =
        ParseDescriptor((**layers)[i], absl::StrCat(ToAbsl(where), " layer ", i));
    if (!layer.ok()) return layer.status();
    out.layers.push_back(*std::move(layer));
  }
  return out;
}

std::string RegistryErrorText(std::string_view body) {
  absl::StatusOr<Json> j = ParseBoundedJson(body, "error body");
  if (!j.ok() || !j->is_object()) return "";
  // containerd ErrorCode.Error(): the code lower-cased with '_' as ' ', then the message.
  auto one = [](const Json& e) -> std::string {
    if (!e.is_object()) return "";
    absl::StatusOr<std::string> code = OptString(e, "code", "");
    absl::StatusOr<std::string> message = OptString(e, "message", "");
    std::string c = code.ok() ? absl::AsciiStrToLower(absl::StrReplaceAll(*code, {{"_", " "}}))
                              : "";
    std::string m = message.ok() ? *message : "";
    if (c.empty()) return m;
    if (m.empty()) return c;
    return absl::StrCat(c, ": ", m);
  };
  std::vector<std::string> parts;
  if (const Json* errors = Member(*j, "errors"); errors != nullptr && errors->is_array()) {
    for (const Json& e : *errors) {
      if (parts.size() == 3) break;
      if (std::string s = one(e); !s.empty()) parts.push_back(std::move(s));
    }
  }
  if (parts.empty()) {
    if (std::string s = one(*j); !s.empty()) {
      parts.push_back(std::move(s));
    } else if (absl::StatusOr<std::string> details = OptString(*j, "details", "");
               details.ok() && !details->empty()) {
      parts.push_back(*std::move(details));
    }
  }
  return SanitizeRemoteText(absl::StrJoin(parts, "; "), 512);
}

std::string SanitizeRemoteText(std::string_view text, size_t max_bytes) {
  const bool cut = text.size() > max_bytes;
  std::string out = absl::CHexEscape(ToAbsl(text.substr(0, max_bytes)));
  if (cut) out += "...";
  return out;
}

}  // namespace zsnap::unpack
