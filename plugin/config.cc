#include "plugin/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "plugin/metrics_server.h"
#include "spdlog/common.h"
#include "toml++/toml.h"

namespace zsnap::plugin {
namespace {

using UserXattr = overlay::SnapshotterOptions::UserXattr;

constexpr size_t kMaxConfigBytes = 1 << 20;  // a config file is a few hundred bytes

absl::string_view TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// Walks one parsed document, collecting every problem so the user fixes them in one go.
class Reader {
 public:
  explicit Reader(const std::string& source) : source_(source) {}

  void Error(const toml::source_region& where, absl::string_view message) {
    errors_.push_back(
        absl::StrCat(source_, ":", where.begin.line, ":", where.begin.column, ": ", message));
  }

  const std::string* String(const toml::node& node, absl::string_view key) {
    if (const auto* s = node.as_string()) return &s->get();
    Error(node.source(),
          absl::StrCat("key '", key, "' must be a string, got ", TypeName(node.type())));
    return nullptr;
  }

  const toml::table* AsTable(const toml::node& node, absl::string_view key) {
    if (const auto* t = node.as_table()) return t;
    Error(node.source(),
          absl::StrCat("key '", key, "' must be a table, got ", TypeName(node.type())));
    return nullptr;
  }

  std::optional<bool> Bool(const toml::node& node, absl::string_view key) {
    if (const auto* b = node.as_boolean()) return b->get();
    Error(node.source(),
          absl::StrCat("key '", key, "' must be a boolean, got ", TypeName(node.type())));
    return std::nullopt;
  }

  // An integer in [lo, hi], or nullopt after recording why not.
  std::optional<int64_t> Integer(const toml::node& node, absl::string_view key, int64_t lo,
                                 int64_t hi) {
    const auto* i = node.as_integer();
    if (i == nullptr) {
      Error(node.source(),
            absl::StrCat("key '", key, "' must be an integer, got ", TypeName(node.type())));
      return std::nullopt;
    }
    const int64_t v = i->get();
    if (v < lo || v > hi) {
      Error(node.source(),
            absl::StrCat("key '", key, "' = ", v, " is out of range [", lo, ", ", hi, "]"));
      return std::nullopt;
    }
    return v;
  }

  // Applies the handler registered for each key of `table`; unknown keys are errors.
  using Handler = std::function<void(const toml::node&, const std::string& key)>;
  void Table(const toml::table& table, absl::string_view prefix,
             const std::map<std::string, Handler, std::less<>>& handlers) {
    for (const auto& [key, node] : table) {
      const std::string bare(key.str());
      const std::string name = absl::StrCat(prefix, bare);
      auto it = handlers.find(bare);
      if (it == handlers.end()) {
        Error(key.source(), absl::StrCat("unknown key '", name, "'"));
        continue;
      }
      it->second(node, name);
    }
  }

  absl::Status Result() const {
    if (errors_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrJoin(errors_, "; "));
  }

 private:
  std::string source_;
  std::vector<std::string> errors_;
};

// The error of a status-returning parser, recorded at `node`.
template <typename T>
void Assign(Reader& reader, const toml::node& node, const absl::StatusOr<T>& parsed, T* out) {
  if (parsed.ok()) {
    *out = *parsed;
  } else {
    reader.Error(node.source(), parsed.status().message());
  }
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open config file ", path, ": ", std::strerror(errno)));
  }
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read config file ", path, ": ", std::strerror(err)));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", path, " is larger than ", kMaxConfigBytes, " bytes"));
    }
  }
  close(fd);
  return text;
}

// [metrics]: address, checked here so a bad one is reported with its line.
void ParseMetricsTable(Reader& reader, const toml::node& node, MetricsConfig& out) {
  const toml::table* table = reader.AsTable(node, "metrics");
  if (table == nullptr) return;
  const auto address = [&](const toml::node& n, const std::string& key) {
    const std::string* s = reader.String(n, key);
    if (s == nullptr) return;
    if (!s->empty()) {
      if (auto parsed = ParseMetricsAddress(*s); !parsed.ok()) {
        reader.Error(n.source(), parsed.status().message());
        return;
      }
    }
    out.address = *s;
  };
  reader.Table(*table, "metrics.", {{"address", address}});
}

// [reports]: keep.
void ParseReportsTable(Reader& reader, const toml::node& node, ReportsConfig& out) {
  const toml::table* table = reader.AsTable(node, "reports");
  if (table == nullptr) return;
  const auto keep = [&](const toml::node& n, const std::string& key) {
    if (auto v = reader.Integer(n, key, 0, kMaxReportsKeep)) out.keep = static_cast<int>(*v);
  };
  reader.Table(*table, "reports.", {{"keep", keep}});
}

}  // namespace

unpack::UnpackLimits UnpackConfig::Limits() const {
  unpack::UnpackLimits limits;
  limits.max_uncompressed_bytes = max_uncompressed_bytes;
  limits.zstd_window_log_max = zstd_window_log_max;
  return limits;
}

absl::StatusOr<UserXattr> ParseUserXattr(absl::string_view name) {
  if (name == "auto") return UserXattr::kAuto;
  if (name == "on") return UserXattr::kOn;
  if (name == "off") return UserXattr::kOff;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown userxattr mode \"", name, "\" (want auto, on or off)"));
}

absl::string_view UserXattrName(UserXattr mode) {
  switch (mode) {
    case UserXattr::kOn:
      return "on";
    case UserXattr::kOff:
      return "off";
    case UserXattr::kAuto:
      break;
  }
  return "auto";
}

absl::StatusOr<Config> Config::Load(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallFile(path);
  if (!text.ok()) return text.status();
  return Parse(*text, path);
}

absl::StatusOr<Config> Config::Parse(absl::string_view text, const std::string& source) {
  toml::table doc;
  try {
    doc = toml::parse(std::string_view(text.data(), text.size()), std::string_view(source));
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    return absl::InvalidArgumentError(absl::StrCat(source, ":", begin.line, ":", begin.column, ": ",
                                                   std::string(e.description())));
  }

  Config config;
  Reader reader(source);
  const auto set_string = [&](std::string* out) {
    return [&reader, out](const toml::node& node, const std::string& key) {
      if (const std::string* s = reader.String(node, key)) *out = *s;
    };
  };
  const auto set_int = [&](int* out, int64_t lo, int64_t hi) {
    return [&reader, out, lo, hi](const toml::node& node, const std::string& key) {
      if (auto v = reader.Integer(node, key, lo, hi)) *out = static_cast<int>(*v);
    };
  };

  reader.Table(
      doc, "",
      {
          {"root", set_string(&config.root)},
          {"address", set_string(&config.address)},
          {"log_level",
           [&](const toml::node& node, const std::string& key) {
             if (const std::string* s = reader.String(node, key)) {
               Assign(reader, node, ParseLogLevel(*s), &config.log_level);
             }
           }},
          {"log_format",
           [&](const toml::node& node, const std::string& key) {
             if (const std::string* s = reader.String(node, key)) {
               Assign(reader, node, ParseLogFormat(*s), &config.log_format);
             }
           }},
          {"userxattr",
           [&](const toml::node& node, const std::string& key) {
             if (const std::string* s = reader.String(node, key)) {
               Assign(reader, node, ParseUserXattr(*s), &config.userxattr);
             }
           }},
          {"unpack",
           [&](const toml::node& node, const std::string& key) {
             const toml::table* table = reader.AsTable(node, "unpack");
             if (table == nullptr) return;
             UnpackConfig& u = config.unpack;
             reader.Table(
                 *table, "unpack.",
                 {
                     {"writer_threads", set_int(&u.writer_threads, 0, 1024)},
                     {"zstd_window_log_max", set_int(&u.zstd_window_log_max, 10, 31)},
                     {"max_uncompressed_bytes",
                      [&](const toml::node& n, const std::string& k) {
                        if (auto v = reader.Integer(n, k, 1, std::numeric_limits<int64_t>::max())) {
                          u.max_uncompressed_bytes = static_cast<uint64_t>(*v);
                        }
                      }},
                 });
           }},
          {"remote",
           [&](const toml::node& node, const std::string& key) {
             const toml::table* table = reader.AsTable(node, "remote");
             if (table == nullptr) return;
             RemoteConfig& r = config.remote;
             reader.Table(
                 *table, "remote.",
                 {
                     {"enabled",
                      [&](const toml::node& n, const std::string& k) {
                        if (auto v = reader.Bool(n, k)) r.enabled = *v;
                      }},
                     {"hosts_dir", set_string(&r.hosts_dir)},
                     {"docker_config", set_string(&r.docker_config)},
                     {"max_concurrent_layers", set_int(&r.max_concurrent_layers, 1, 256)},
                     {"max_concurrent_layers_per_image",
                      set_int(&r.max_concurrent_layers_per_image, 1, 256)},
                     {"unclaimed_ttl_s", set_int(&r.unclaimed_ttl_s, 1, 7 * 24 * 3600)},
                     {"connect_timeout_s", set_int(&r.connect_timeout_s, 1, 3600)},
                     {"io_timeout_s", set_int(&r.io_timeout_s, 1, 3600)},
                     {"max_attempts", set_int(&r.max_attempts, 1, 100)},
                 });
           }},
          {"metrics", [&](const toml::node& node,
                          const std::string&) { ParseMetricsTable(reader, node, config.metrics); }},
          {"reports", [&](const toml::node& node,
                          const std::string&) { ParseReportsTable(reader, node, config.reports); }},
      });
  if (absl::Status status = reader.Result(); !status.ok()) return status;
  if (absl::Status status = config.Validate(); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", status.message()));
  }
  return config;
}

absl::Status Config::Validate() const {
  if (root.empty() || root.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("root \"", root, "\" must be an absolute path"));
  }
  if (address.empty() || address.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address, "\" must be an absolute socket path"));
  }
  // sockaddr_un.sun_path is 108 bytes including the terminating NUL.
  if (address.size() > 107) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address \"", address, "\" is longer than the 107 bytes a unix socket allows"));
  }
  if (!metrics.address.empty()) {
    if (auto parsed = ParseMetricsAddress(metrics.address); !parsed.ok()) return parsed.status();
  }
  if (reports.keep < 0 || reports.keep > kMaxReportsKeep) {
    return absl::InvalidArgumentError(absl::StrCat("reports.keep = ", reports.keep,
                                                   " is out of range [0, ", kMaxReportsKeep, "]"));
  }
  return absl::OkStatus();
}

std::string Config::ToToml() const {
  const auto level = spdlog::level::to_string_view(log_level);
  const auto str = [](absl::string_view v) { return std::string(v.data(), v.size()); };
  toml::table doc{
      {"root", root},
      {"address", address},
      {"log_level", std::string(level.data(), level.size())},
      {"log_format", str(LogFormatName(log_format))},
      {"userxattr", str(UserXattrName(userxattr))},
      {"unpack",
       toml::table{
           {"writer_threads", unpack.writer_threads},
           {"max_uncompressed_bytes", static_cast<int64_t>(unpack.max_uncompressed_bytes)},
           {"zstd_window_log_max", unpack.zstd_window_log_max},
       }},
      {"remote",
       toml::table{
           {"enabled", remote.enabled},
           {"hosts_dir", remote.hosts_dir},
           {"docker_config", remote.docker_config},
           {"max_concurrent_layers", remote.max_concurrent_layers},
           {"max_concurrent_layers_per_image", remote.max_concurrent_layers_per_image},
           {"unclaimed_ttl_s", remote.unclaimed_ttl_s},
           {"connect_timeout_s", remote.connect_timeout_s},
           {"io_timeout_s", remote.io_timeout_s},
           {"max_attempts", remote.max_attempts},
       }},
      {"metrics", toml::table{{"address", metrics.address}}},
      {"reports", toml::table{{"keep", reports.keep}}},
  };
  std::ostringstream out;
  out << doc << "\n";
  return out.str();
}

}  // namespace zsnap::plugin
