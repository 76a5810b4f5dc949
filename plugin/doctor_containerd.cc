// `zsnap doctor` checks of the wiring: zsnap's socket, containerd's config, socket and plugin
// list, and an optional registry.
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "plugin/containerd_config.h"
#include "plugin/doctor.h"
#include "plugin/subprocess.h"
#include "toml++/toml.h"

namespace zsnap::plugin {
namespace {

constexpr char kDefaultContainerdAddress[] = "/run/containerd/containerd.sock";
constexpr char kCriV2[] = "io.containerd.grpc.v1.cri";
constexpr char kCriImagesV3[] = "io.containerd.cri.v1.images";
constexpr char kTransferV3[] = "io.containerd.transfer.v1.local";

const toml::node* At(const toml::table& doc, const std::vector<std::string_view>& path) {
  const toml::node* node = &doc;
  for (std::string_view key : path) {
    const toml::table* t = node->as_table();
    if (t == nullptr) return nullptr;
    node = t->get(key);
    if (node == nullptr) return nullptr;
  }
  return node;
}

std::string StringAt(const toml::table& doc, const std::vector<std::string_view>& path) {
  const toml::node* n = At(doc, path);
  return n != nullptr && n->is_string() ? n->as_string()->get() : "";
}

// Connects a unix stream socket with a timeout; 0 or an errno.
int ConnectUnix(const std::string& path, absl::Duration timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return ENAMETOOLONG;
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)), 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int err = rc == 0 ? 0 : errno;
  close(fd);
  return err;
}

}  // namespace

CheckResult CheckZsnapSocket(const std::string& address, absl::Duration timeout) {
  const std::string name = "zsnap/socket";
  const std::string fix =
      "start zsnap (systemctl enable --now zsnap; journalctl -u zsnap for why it stopped)";
  if (const int err = ConnectUnix(address, timeout); err != 0) {
    return {name, CheckLevel::kFail,
            absl::StrCat("cannot connect to ", address, ": ", std::strerror(err)), fix};
  }
  auto channel = grpc::CreateChannel("unix:" + address, grpc::InsecureChannelCredentials());
  auto stub = ::containerd::services::snapshots::v1::Snapshots::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  ::containerd::services::snapshots::v1::ListSnapshotsRequest req;
  req.set_snapshotter("zsnap");
  req.add_filters("name==zsnap-doctor-probe");  // matches nothing: cheap on a busy node
  auto reader = stub->List(&ctx, req);
  ::containerd::services::snapshots::v1::ListSnapshotsResponse resp;
  while (reader->Read(&resp)) {
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    return {name, CheckLevel::kFail,
            absl::StrCat(address, " accepts connections but Snapshots.List failed: ",
                         status.error_message(), " (code ", status.error_code(), ")"),
            absl::StrCat("is zsnap the process listening on ", address, "? ", fix)};
  }
  return {name, CheckLevel::kOk, absl::StrCat("zsnap answers Snapshots.List on ", address), ""};
}

std::string ContainerdAddressFromConfig(absl::string_view text) {
  try {
    toml::table doc = toml::parse(std::string_view(text.data(), text.size()));
    const std::string address = StringAt(doc, {"grpc", "address"});
    if (!address.empty()) return address;
  } catch (const toml::parse_error&) {
  }
  return kDefaultContainerdAddress;
}

std::vector<CheckResult> CheckContainerdConfigText(absl::string_view text,
                                                   const std::string& source, const Config& zsnap) {
  std::vector<CheckResult> out;
  toml::table doc;
  try {
    doc = toml::parse(std::string_view(text.data(), text.size()), std::string_view(source));
  } catch (const toml::parse_error& e) {
    out.push_back(
        {"containerd/config", CheckLevel::kFail,
         absl::StrCat(source, ":", e.source().begin.line, ": ", std::string(e.description())),
         "fix the TOML syntax; containerd will not start with this file"});
    return out;
  }
  const toml::node* vnode = doc.get("version");
  const int64_t version = vnode != nullptr && vnode->is_integer() ? vnode->as_integer()->get() : 1;
  const bool v2 = version == 2;
  const bool v3 = version == 3 || version == 4;
  const std::string series = v3 ? "2.x" : "1.7";
  const std::string merge_fix = absl::StrCat(
      "zsnap config containerd --merge ", source, " --containerd-version ", series, " --address ",
      zsnap.address, " --root ", zsnap.root, ", then systemctl restart containerd");
  if (!v2 && !v3) {
    out.push_back({"containerd/config", CheckLevel::kFail,
                   absl::StrCat(source, " is config version ", version,
                                ", which zsnap does not know (it writes 2 for 1.x, 3 for 2.x)"),
                   "convert it to version 2 (containerd 1.x) or 3 (2.x), then " + merge_fix});
    return out;
  }

  // containerd merges imported files over this one, replacing whole tables: what is checked
  // below may be overridden there.
  if (const toml::array* imports = doc.get_as<toml::array>("imports");
      imports != nullptr && !imports->empty()) {
    std::vector<std::string> files;
    for (const toml::node& f : *imports) {
      if (f.is_string()) files.push_back(f.as_string()->get());
    }
    out.push_back({"containerd/config-imports", CheckLevel::kWarn,
                   absl::StrCat(source, " imports ", absl::StrJoin(files, ", "), "; only ", source,
                                " is checked, and an imported file that sets "
                                "the same tables replaces them"),
                   "keep zsnap's keys out of the imported files, or check `containerd config "
                   "dump`"});
  }

  // The proxy plugin: the entry whose address is zsnap's socket, else one named zsnap.
  std::string plugin_name;
  const toml::table* proxies = doc.get_as<toml::table>("proxy_plugins");
  if (proxies != nullptr) {
    for (const auto& [key, node] : *proxies) {
      const toml::table* p = node.as_table();
      if (p != nullptr && p->get_as<std::string>("address") != nullptr &&
          p->get_as<std::string>("address")->get() == zsnap.address) {
        plugin_name = std::string(key.str());
        break;
      }
    }
  }
  if (plugin_name.empty()) {
    const std::string other = StringAt(doc, {"proxy_plugins", "zsnap", "address"});
    out.push_back({"containerd/config-proxy-plugin", CheckLevel::kFail,
                   other.empty()
                       ? absl::StrCat(source, " has no [proxy_plugins] entry for zsnap's socket ",
                                      zsnap.address)
                       : absl::StrCat(source, ": [proxy_plugins.zsnap] address is ", other,
                                      " but zsnap listens on ", zsnap.address),
                   merge_fix});
    return out;
  }
  const std::string type = StringAt(doc, {"proxy_plugins", plugin_name, "type"});
  if (type != "snapshot" && type != "io.containerd.snapshotter.v1") {
    out.push_back(
        {"containerd/config-proxy-plugin", CheckLevel::kFail,
         absl::StrCat("[proxy_plugins.", plugin_name, "] type is \"", type, "\", not \"snapshot\""),
         merge_fix});
  } else {
    out.push_back({"containerd/config-proxy-plugin", CheckLevel::kOk,
                   absl::StrCat("[proxy_plugins.", plugin_name,
                                "] type = \"snapshot\", address = ", zsnap.address),
                   ""});
  }
  const std::string root = StringAt(doc, {"proxy_plugins", plugin_name, "exports", "root"});
  if (root != zsnap.root) {
    out.push_back({"containerd/config-exports-root", CheckLevel::kWarn,
                   absl::StrCat("exports.root is \"", root, "\", zsnap's root is ", zsnap.root,
                                " (containerd 1.6.32+/1.7.16+/2.x report image filesystem "
                                "usage from it)"),
                   merge_fix});
  }

  // CRI.
  const std::vector<std::string_view> cri =
      v2 ? std::vector<std::string_view>{"plugins", kCriV2, "containerd"}
         : std::vector<std::string_view>{"plugins", kCriImagesV3};
  const std::string cri_name = v2 ? absl::StrCat("[plugins.\"", kCriV2, "\".containerd]")
                                  : absl::StrCat("[plugins.'", kCriImagesV3, "']");
  const toml::node* cri_table = At(doc, cri);
  const toml::table* cri_t = cri_table != nullptr ? cri_table->as_table() : nullptr;
  const toml::node* snapshotter = cri_t != nullptr ? cri_t->get("snapshotter") : nullptr;
  if (snapshotter == nullptr || !snapshotter->is_string() ||
      snapshotter->as_string()->get() != plugin_name) {
    out.push_back({"containerd/config-cri-snapshotter", CheckLevel::kFail,
                   absl::StrCat(cri_name, " snapshotter is ",
                                snapshotter != nullptr && snapshotter->is_string()
                                    ? absl::StrCat("\"", snapshotter->as_string()->get(), "\"")
                                    : "unset (overlayfs)",
                                ", so Kubernetes pods do not use zsnap"),
                   merge_fix});
  } else {
    out.push_back({"containerd/config-cri-snapshotter", CheckLevel::kOk,
                   absl::StrCat(cri_name, " snapshotter = \"", plugin_name, "\""), ""});
  }
  const toml::node* dsa = cri_t != nullptr ? cri_t->get("disable_snapshot_annotations") : nullptr;
  if (dsa == nullptr || !dsa->is_boolean() || dsa->as_boolean()->get()) {
    out.push_back({"containerd/config-cri-annotations", CheckLevel::kFail,
                   absl::StrCat(cri_name, " disable_snapshot_annotations is ",
                                dsa == nullptr ? "unset (default true)" : "not false",
                                ": CRI pulls send no layer labels, zsnap cannot unpack layers "
                                "itself"),
                   merge_fix});
  } else {
    out.push_back({"containerd/config-cri-annotations", CheckLevel::kOk,
                   absl::StrCat(cri_name, " disable_snapshot_annotations = false"), ""});
  }

  if (v3) {
    // 2.1+ transfer-service pulls (ctr, CRI when it uses the transfer service).
    const bool annotations = StringAt(doc, {"proxy_plugins", plugin_name, "exports",
                                            "enable_remote_snapshot_annotations"}) == "true";
    bool unpack = false;
    if (const toml::node* n = At(doc, {"plugins", kTransferV3, "unpack_config"})) {
      if (const toml::array* a = n->as_array()) {
        for (const toml::node& e : *a) {
          const toml::table* t = e.as_table();
          if (t != nullptr && t->get_as<std::string>("snapshotter") != nullptr &&
              t->get_as<std::string>("snapshotter")->get() == plugin_name) {
            unpack = true;
          }
        }
      }
    }
    if (annotations && unpack) {
      out.push_back({"containerd/config-transfer", CheckLevel::kOk,
                     "transfer service: unpack_config lists zsnap, exports "
                     "enable_remote_snapshot_annotations = \"true\"",
                     ""});
    } else {
      out.push_back(
          {"containerd/config-transfer", CheckLevel::kWarn,
           absl::StrCat(!unpack ? "no [[plugins.'io.containerd.transfer.v1.local'.unpack_config]]"
                                  " entry for zsnap (ctr pulls cannot unpack into it)"
                                : "",
                        !unpack && !annotations ? "; " : "",
                        !annotations ? "exports.enable_remote_snapshot_annotations is not "
                                       "\"true\" (2.1+ transfer pulls send no layer labels)"
                                     : ""),
           absl::StrCat("on containerd 2.1+: ", merge_fix)});
    }
  }
  return out;
}

CheckResult CheckContainerdSocket(const std::string& address, absl::Duration timeout) {
  if (const int err = ConnectUnix(address, timeout); err != 0) {
    return {"containerd/socket", CheckLevel::kFail,
            absl::StrCat("cannot connect to containerd at ", address, ": ", std::strerror(err)),
            "systemctl start containerd (journalctl -u containerd shows config errors); or pass "
            "--containerd-address"};
  }
  return {"containerd/socket", CheckLevel::kOk, absl::StrCat("containerd listens on ", address),
          ""};
}

std::string SnapshotterStatusFromCtr(absl::string_view ctr_output, absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(ctr_output, '\n')) {
    std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (f.size() >= 3 && f[0] == "io.containerd.snapshotter.v1" && f[1] == name) {
      return std::string(f.back());
    }
  }
  return "";
}

CheckResult CheckCtrPlugins(const std::string& ctr, const std::string& address,
                            absl::Duration timeout) {
  const std::string name = "containerd/plugin";
  absl::StatusOr<CommandResult> run =
      RunCommand({ctr, "--address", address, "plugins", "ls"}, timeout);
  if (absl::IsNotFound(run.status())) {
    return {name, CheckLevel::kSkip, absl::StrCat(ctr, " is not on PATH"), ""};
  }
  if (!run.ok()) {
    return {name, CheckLevel::kFail, std::string(run.status().message()),
            "is containerd hung? journalctl -u containerd"};
  }
  if (run->exit_code != 0) {
    return {
        name, CheckLevel::kFail,
        absl::StrCat("`ctr plugins ls` exited ", run->exit_code, ": ", run->output.substr(0, 300)),
        "systemctl status containerd"};
  }
  const std::string status = SnapshotterStatusFromCtr(run->output, "zsnap");
  if (status == "ok") {
    return {name, CheckLevel::kOk, "ctr plugins ls: io.containerd.snapshotter.v1 zsnap ok", ""};
  }
  return {name, CheckLevel::kFail,
          status.empty() ? "containerd does not list the zsnap snapshotter: it runs with a "
                           "config without [proxy_plugins.zsnap]"
                         : absl::StrCat("containerd lists the zsnap snapshotter as ", status),
          "wire the config (see containerd/config-*), then systemctl restart containerd"};
}

CheckResult CheckRegistry(const std::string& host_port, absl::Duration timeout) {
  const std::string name = "registry";
  std::string host = host_port;
  std::string port = "443";
  if (const size_t colon = host_port.rfind(':'); colon != std::string::npos &&
                                                 host_port.find(']') == std::string::npos &&
                                                 host_port.find(':') == colon) {
    host = host_port.substr(0, colon);
    port = host_port.substr(colon + 1);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return {name, CheckLevel::kFail, absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)),
            "check DNS (/etc/resolv.conf) and the registry name"};
  }
  std::string last_error = "no addresses";
  bool ok = false;
  for (addrinfo* a = res; a != nullptr && !ok; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof(err);
      if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) == 1 &&
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        ok = true;
      } else {
        last_error = err != 0 ? std::strerror(err) : "timed out";
      }
    } else {
      last_error = std::strerror(errno);
    }
    close(fd);
  }
  freeaddrinfo(res);
  if (ok) {
    return {name, CheckLevel::kOk, absl::StrCat("TCP connect to ", host, ":", port, " works"), ""};
  }
  return {name, CheckLevel::kFail,
          absl::StrCat("cannot connect to ", host, ":", port, ": ", last_error),
          "check security groups / NACLs, an HTTP(S) proxy, or a VPC endpoint for the registry"};
}

}  // namespace zsnap::plugin
