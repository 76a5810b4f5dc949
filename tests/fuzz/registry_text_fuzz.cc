// libFuzzer: the text headers and files that shape zsnap's registry requests — a registry's
// WWW-Authenticate challenge (ParseWwwAuthenticate) and a node's hosts.toml
// (ParseHostsToml). The first byte picks the parser. A parsed challenge or host must not carry
// CR, LF or NUL into a request line or header (header injection, issue 11).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "unpack/hosts_config.h"
#include "unpack/registry_auth.h"

namespace {

bool HasControl(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    (void)zsnap::unpack::ParseWwwAuthenticate(text);
  } else {
    auto hosts = zsnap::unpack::ParseHostsToml(text, "registry.example:5000", "/nonexistent");
    if (hosts.ok()) {
      for (const auto& h : *hosts) {
        for (const auto& [k, v] : h.headers) {
          if (HasControl(k) || HasControl(v)) std::abort();
        }
      }
    }
  }
  return 0;
}
