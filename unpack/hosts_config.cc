#include "unpack/hosts_config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "toml++/toml.h"

namespace zsnap::unpack {
namespace {

namespace fs = std::filesystem;

absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

absl::Status Invalid(std::string_view where, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("hosts.toml ", ToAbsl(where), ": ", ToAbsl(why)));
}

std::string ResolvePath(const std::string& base_dir, std::string_view path) {
  fs::path p{std::string(path)};
  if (p.is_absolute() || base_dir.empty()) return p.string();
  return (fs::path(base_dir) / p).string();
}

// "a" or ["a", "b"] -> list of strings.
absl::StatusOr<std::vector<std::string>> StringOrList(const toml::node& node,
                                                      std::string_view where) {
  std::vector<std::string> out;
  if (auto s = node.value<std::string>()) {
    out.push_back(*s);
    return out;
  }
  const toml::array* arr = node.as_array();
  if (arr == nullptr) return Invalid(where, "want a string or a list of strings");
  for (const toml::node& item : *arr) {
    auto s = item.value<std::string>();
    if (!s) return Invalid(where, "want a string or a list of strings");
    out.push_back(*s);
  }
  return out;
}

// Applies the per-host keys of `table` (the top level or one [host."url"]) to `host`.
absl::Status ApplyHostKeys(const toml::table& table, std::string_view where,
                           const std::string& base_dir, RegistryHost& host, bool& override_path) {
  if (const toml::node* caps = table.get("capabilities")) {
    auto names = StringOrList(*caps, absl::StrCat(ToAbsl(where), " capabilities"));
    if (!names.ok()) return names.status();
    host.capabilities = 0;
    for (const std::string& name : *names) {
      if (name == "pull") {
        host.capabilities |= kCapabilityPull;
      } else if (name == "resolve") {
        host.capabilities |= kCapabilityResolve;
      } else if (name == "push") {
        host.capabilities |= kCapabilityPush;
      } else {
        return Invalid(where, absl::StrCat("unknown capability \"", name, "\""));
      }
    }
  }
  if (const toml::node* ca = table.get("ca")) {
    auto files = StringOrList(*ca, absl::StrCat(ToAbsl(where), " ca"));
    if (!files.ok()) return files.status();
    for (const std::string& f : *files) host.tls.ca_files.push_back(ResolvePath(base_dir, f));
  }
  if (const toml::node* client = table.get("client")) {
    // "pem" | ["cert", "key"] pairs | a list mixing both; a lone file holds cert and key.
    auto add_pair = [&](const toml::node& n) -> absl::Status {
      if (auto s = n.value<std::string>()) {
        host.tls.client_certs.emplace_back(ResolvePath(base_dir, *s), ResolvePath(base_dir, *s));
        return absl::OkStatus();
      }
      const toml::array* pair = n.as_array();
      if (pair == nullptr || pair->empty() || pair->size() > 2) {
        return Invalid(where, "client: want \"file\" or [\"cert\", \"key\"]");
      }
      auto cert = (*pair)[0].value<std::string>();
      auto key = pair->size() == 2 ? (*pair)[1].value<std::string>() : cert;
      if (!cert || !key) return Invalid(where, "client: want strings");
      if (key->empty()) key = cert;
      host.tls.client_certs.emplace_back(ResolvePath(base_dir, *cert), ResolvePath(base_dir, *key));
      return absl::OkStatus();
    };
    const toml::array* arr = client->as_array();
    bool list_of_pairs = arr != nullptr && !arr->empty() && !(*arr)[0].is_string();
    if (arr != nullptr && list_of_pairs) {
      for (const toml::node& item : *arr) {
        if (absl::Status s = add_pair(item); !s.ok()) return s;
      }
    } else if (absl::Status s = add_pair(*client); !s.ok()) {
      return s;
    }
  }
  if (const toml::node* skip = table.get("skip_verify")) {
    auto b = skip->value<bool>();
    if (!b) return Invalid(where, "skip_verify: want a boolean");
    host.tls.skip_verify = *b;
  }
  if (const toml::node* op = table.get("override_path")) {
    auto b = op->value<bool>();
    if (!b) return Invalid(where, "override_path: want a boolean");
    override_path = *b;
  }
  if (const toml::node* header = table.get("header")) {
    const toml::table* headers = header->as_table();
    if (headers == nullptr) return Invalid(where, "header: want a table");
    for (const auto& [name, value] : *headers) {
      auto values = StringOrList(value, absl::StrCat(ToAbsl(where), " header"));
      if (!values.ok()) return values.status();
      for (const std::string& v : *values) host.headers.emplace_back(std::string(name.str()), v);
    }
  }
  return absl::OkStatus();
}

// Sets scheme, authority and path from a host URL; containerd appends /v2 unless the path
// already ends in it or override_path is set.
absl::Status SetEndpoint(std::string_view url_text, bool override_path, RegistryHost& host) {
  std::string text(url_text);
  if (text.find("://") == std::string::npos) text = absl::StrCat("https://", text);
  absl::StatusOr<Url> url = ParseUrl(text);
  if (!url.ok()) return Invalid(url_text, std::string(url.status().message()));
  host.scheme = url->scheme;
  host.authority = url->Authority();
  std::string path = url->target.substr(0, url->target.find('?'));
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.empty()) {
    path = "/v2";
  } else if (!override_path && !absl::EndsWith(path, "/v2")) {
    path += "/v2";
  }
  host.path = path;
  return absl::OkStatus();
}

std::string DefaultServer(std::string_view registry) {
  if (registry == "docker.io") return "https://registry-1.docker.io";
  return absl::StrCat("https://", ToAbsl(registry));
}

// Legacy docker certs.d layout: *.crt CAs, *.cert + *.key client pairs.
void LoadCertFiles(const fs::path& dir, RegistryHost& host) {
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    if (f.extension() == ".crt") host.tls.ca_files.push_back(f.string());
    if (f.extension() == ".cert") {
      fs::path key = f;
      key.replace_extension(".key");
      if (fs::exists(key, ec)) host.tls.client_certs.emplace_back(f.string(), key.string());
    }
  }
}

}  // namespace

absl::StatusOr<Url> RegistryHost::MakeUrl(std::string_view suffix) const {
  return ParseUrl(absl::StrCat(scheme, "://", authority, path, ToAbsl(suffix)));
}

absl::StatusOr<std::vector<RegistryHost>> ParseHostsToml(std::string_view content,
                                                         std::string_view registry,
                                                         const std::string& base_dir) {
  toml::table root;
  try {
    root = toml::parse(content);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin;
    return Invalid(where.str(), e.description());
  }

  std::vector<RegistryHost> hosts;
  if (const toml::node* host_node = root.get("host")) {
    const toml::table* host_table = host_node->as_table();
    if (host_table == nullptr) return Invalid("host", "want a table of [host.\"url\"] tables");
    // toml++ tables are ordered by key; containerd tries mirrors in file order.
    std::vector<std::pair<std::string, const toml::table*>> entries;
    for (const auto& [url, node] : *host_table) {
      const toml::table* t = node.as_table();
      if (t == nullptr) return Invalid(url.str(), "want a table");
      entries.emplace_back(std::string(url.str()), t);
    }
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      return a.second->source().begin.line < b.second->source().begin.line;
    });
    for (const auto& [url, table] : entries) {
      RegistryHost host;
      host.is_mirror = true;
      bool override_path = false;
      if (absl::Status s = ApplyHostKeys(*table, url, base_dir, host, override_path); !s.ok()) {
        return s;
      }
      if (absl::Status s = SetEndpoint(url, override_path, host); !s.ok()) return s;
      hosts.push_back(std::move(host));
    }
  }

  RegistryHost server;
  bool override_path = false;
  if (absl::Status s = ApplyHostKeys(root, "server", base_dir, server, override_path); !s.ok()) {
    return s;
  }
  std::string server_url = DefaultServer(registry);
  if (const toml::node* s = root.get("server")) {
    auto v = s->value<std::string>();
    if (!v) return Invalid("server", "want a string");
    server_url = *v;
  }
  if (absl::Status s = SetEndpoint(server_url, override_path, server); !s.ok()) return s;
  hosts.push_back(std::move(server));
  return hosts;
}

absl::StatusOr<std::vector<RegistryHost>> ConfigureHosts(std::string_view registry,
                                                         const HostsConfigOptions& options) {
  if (registry.empty() || registry.find('/') != std::string_view::npos ||
      registry.find("..") != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid registry host \"", ToAbsl(registry), "\""));
  }
  if (!options.config_dir.empty()) {
    std::error_code ec;
    for (const std::string& name : {std::string(registry), std::string("_default")}) {
      fs::path dir = fs::path(options.config_dir) / name;
      if (!fs::is_directory(dir, ec)) continue;
      fs::path file = dir / "hosts.toml";
      if (fs::exists(file, ec)) {
        std::ifstream in(file, std::ios::binary);
        std::ostringstream content;
        content << in.rdbuf();
        if (!in.good() && !in.eof()) {
          return absl::UnavailableError(absl::StrCat("reading ", file.string()));
        }
        auto hosts = ParseHostsToml(content.str(), registry, dir.string());
        if (!hosts.ok()) {
          return absl::Status(hosts.status().code(),
                              absl::StrCat(file.string(), ": ", hosts.status().message()));
        }
        return hosts;
      }
      RegistryHost server;
      if (absl::Status s = SetEndpoint(DefaultServer(registry), false, server); !s.ok()) return s;
      LoadCertFiles(dir, server);
      return std::vector<RegistryHost>{std::move(server)};
    }
  }
  RegistryHost server;
  if (absl::Status s = SetEndpoint(DefaultServer(registry), false, server); !s.ok()) return s;
  return std::vector<RegistryHost>{std::move(server)};
}

}  // namespace zsnap::unpack
