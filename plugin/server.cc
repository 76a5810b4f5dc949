#include "plugin/server.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "overlay/status_util.h"
#include "spdlog/spdlog.h"

namespace zsnap::plugin {
namespace {

absl::Status MkdirAll(const std::string& dir) {
  if (dir.empty() || dir == "/") return absl::OkStatus();
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("socket directory ", dir, " exists and is not a directory"));
  }
  if (errno != ENOENT) return overlay::ErrnoStatus("stat", dir, errno);
  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos) {
    if (absl::Status s = MkdirAll(dir.substr(0, slash)); !s.ok()) return s;
  }
  // 0700: only root (the daemon's user) may reach the socket; containerd runs as root.
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return overlay::ErrnoStatus("mkdir", dir, errno);
  return absl::OkStatus();
}

// True if something accepts connections on the unix socket at `path`.
bool SocketAnswers(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    close(fd);
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const bool answers = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return answers;
}

void RemoveSocketFile(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cannot remove socket {}: {}", path, std::strerror(errno));
  }
}

}  // namespace

absl::Status PrepareSocketPath(const std::string& address) {
  const size_t slash = address.rfind('/');
  if (address.empty() || address.front() != '/' || slash + 1 == address.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket address \"", address, "\" must be an absolute file path"));
  }
  if (absl::Status s = MkdirAll(address.substr(0, slash)); !s.ok()) return s;

  struct stat st;
  if (lstat(address.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return overlay::ErrnoStatus("lstat", address, errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(address, " exists and is not a socket; refusing to remove it"));
  }
  if (SocketAnswers(address)) {
    return absl::FailedPreconditionError(absl::StrCat("another server is listening on ", address));
  }
  if (unlink(address.c_str()) != 0 && errno != ENOENT) {
    return overlay::ErrnoStatus("remove stale socket", address, errno);
  }
  spdlog::info("removed stale socket {}", address);
  return absl::OkStatus();
}

absl::Status BindUnixSocket(const std::string& address, mode_t mode,
                            absl::FunctionRef<absl::Status(const std::string& tmp)> bind_at) {
  const size_t slash = address.rfind('/');
  if (slash == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket address \"", address, "\" has no directory"));
  }
  // <dir>/.zsnap-XXXXXX/s must fit where <dir>/<name> does (sun_path holds 107 bytes).
  std::string tmp_dir = absl::StrCat(address.substr(0, slash + 1), ".zsnap-XXXXXX");
  const std::string probe = absl::StrCat(tmp_dir, "/s");
  if (probe.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket address \"", address, "\" leaves no room for the temporary bind path ", probe,
        " in the ", sizeof(sockaddr_un{}.sun_path) - 1, " bytes a unix socket allows"));
  }
  // mkdtemp creates the directory 0700 whatever the umask.
  if (mkdtemp(tmp_dir.data()) == nullptr) return overlay::ErrnoStatus("mkdtemp", tmp_dir, errno);
  const std::string tmp = absl::StrCat(tmp_dir, "/s");
  absl::Status status = bind_at(tmp);
  if (status.ok() && chmod(tmp.c_str(), mode) != 0) {
    status = overlay::ErrnoStatus("chmod", tmp, errno);
  }
  if (status.ok() && rename(tmp.c_str(), address.c_str()) != 0) {
    status = overlay::ErrnoStatus(absl::StrCat("rename ", tmp, " to"), address, errno);
  }
  if (!status.ok() && unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cannot remove temporary socket {}: {}", tmp, std::strerror(errno));
  }
  if (rmdir(tmp_dir.c_str()) != 0 && status.ok()) {
    status = overlay::ErrnoStatus("rmdir", tmp_dir, errno);
  }
  return status;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const std::string& address, grpc::Service& service,
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors,
    mode_t socket_mode) {
  if (absl::Status s = PrepareSocketPath(address); !s.ok()) return s;
  grpc::ServerBuilder builder;
  std::unique_ptr<grpc::Server> server;
  // The builder is filled in by the bind callback, which knows the temporary path.
  absl::Status bound = BindUnixSocket(address, socket_mode, [&](const std::string& tmp) {
    builder.AddListeningPort(absl::StrCat("unix:", tmp), grpc::InsecureServerCredentials());
    builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
    builder.SetMaxSendMessageSize(kMaxMessageBytes);
    builder.RegisterService(&service);
    if (!interceptors.empty()) {
      builder.experimental().SetInterceptorCreators(std::move(interceptors));
    }
    server = builder.BuildAndStart();
    if (server == nullptr) {
      // gRPC has already logged the bind error itself.
      return absl::UnavailableError(absl::StrCat("cannot listen on unix socket ", address));
    }
    return absl::OkStatus();
  });
  if (!bound.ok()) {
    if (server != nullptr) server->Shutdown(std::chrono::system_clock::now());
    return bound;
  }
  return std::unique_ptr<Server>(new Server(address, std::move(server)));
}

Server::~Server() {
  Shutdown(absl::ZeroDuration());
  Wait();
}

void Server::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  RemoveSocketFile(address_);
}

void Server::Wait() { server_->Wait(); }

}  // namespace zsnap::plugin
