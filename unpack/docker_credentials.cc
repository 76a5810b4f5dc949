#include "unpack/docker_credentials.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace zsnap::unpack {
namespace {

absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

constexpr std::string_view kDockerHubServer = "https://index.docker.io/v1/";

// "https://index.docker.io/v1/" -> "index.docker.io", "host:5000/" -> "host:5000"; Docker
// Hub's aliases collapse to "docker.io".
std::string NormaliseHost(std::string_view key) {
  std::string_view s = key;
  if (size_t p = s.find("://"); p != std::string_view::npos) s = s.substr(p + 3);
  s = s.substr(0, s.find('/'));
  std::string host = absl::AsciiStrToLower(ToAbsl(s));
  if (host == "index.docker.io" || host == "registry-1.docker.io") return "docker.io";
  return host;
}

std::string ServerUrlFor(const std::string& host) {
  return host == "docker.io" ? std::string(kDockerHubServer) : host;
}

// Identity tokens are OAuth refresh tokens, which this client does not speak.
Credentials Anonymous() { return Credentials{}; }

// Closes fds on scope exit.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int* out() { return &fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::Status Errno(std::string_view op, const std::string& what) {
  return absl::ErrnoToStatus(errno, absl::StrCat(ToAbsl(op), " ", what));
}

std::string FindProgram(const std::string& name, const std::string& search_path) {
  std::string path = search_path;
  if (path.empty()) {
    const char* env = std::getenv("PATH");
    path = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  }
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// docker-credential-helpers credentials/error.go: the helper's whole (trimmed) stdout for
// "nothing stored for this server", compared exactly (IsErrCredentialsNotFoundMessage).
constexpr std::string_view kCredentialsNotFound = "credentials not found in native keychain";

// Writes what fits of `data` into the (non-blocking) pipe without dying of SIGPIPE if the
// reader already exited. A helper that does not read its stdin cannot stall us.
void WriteIgnoringPipeErrors(int fd, std::string_view data) {
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  bool got_epipe = false;
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      got_epipe = errno == EPIPE;
      break;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (got_epipe) {
    // Consume the SIGPIPE this thread raised (unless one was already pending before).
    timespec zero{0, 0};
    sigtimedwait(&pipe_set, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
}

std::chrono::milliseconds Left(std::chrono::steady_clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now()));
}

// True once `pid` (our child) has exited, false if `deadline` passes first. The child is left
// unreaped (a zombie keeps its pid, so its process group can still be signalled safely).
bool WaitForExit(pid_t pid, std::chrono::steady_clock::time_point deadline) {
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  for (;;) {
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid) {
      return true;
    }
    std::chrono::milliseconds left = Left(deadline);
    if (left.count() == 0) return false;
    if (pidfd.get() >= 0) {
      // A pidfd turns readable when the process exits.
      pollfd pfd{pidfd.get(), POLLIN, 0};
      poll(&pfd, 1, static_cast<int>(left.count()));
    } else {
      // Kernels before 5.3: look again every 10 ms until the deadline.
      timespec nap{0, 10'000'000};
      nanosleep(&nap, nullptr);
    }
  }
}

// A JSON string member of `object`; null or missing is "" (Go encoding/json leaves the
// string empty); any other type is nullopt.
std::optional<std::string> StringMember(const nlohmann::json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

absl::StatusOr<Credentials> RunCredentialHelper(const std::string& helper,
                                                std::string_view server_url,
                                                const DockerCredentialsOptions& options) {
  const std::string name = absl::StrCat("docker-credential-", helper);
  if (helper.empty() || helper.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid credential helper name \"", helper, "\""));
  }
  std::string program = FindProgram(name, options.helper_search_path);
  if (program.empty()) return absl::NotFoundError(absl::StrCat(name, ": not found in PATH"));

  Fd in_read, in_write, out_read, out_write;
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return Errno("pipe for", name);
  *in_read.out() = in_pipe[0];
  *in_write.out() = in_pipe[1];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return Errno("pipe for", name);
  *out_read.out() = out_pipe[0];
  *out_write.out() = out_pipe[1];
  // Only our end: the helper's stdin stays blocking.
  fcntl(in_write.get(), F_SETFL, O_NONBLOCK);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_read.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  // Its own process group, so a timeout kills whatever the helper started too; a clean signal
  // mask and default SIGPIPE rather than whatever the daemon's thread had.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t no_signals, default_signals;
  sigemptyset(&no_signals);
  posix_spawnattr_setsigmask(&attr, &no_signals);
  sigemptyset(&default_signals);
  sigaddset(&default_signals, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &default_signals);
  std::string arg0 = program, arg1 = "get";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, program.c_str(), &actions, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    errno = rc;
    return Errno("spawn", program);
  }
  in_read.Reset();
  out_write.Reset();
  WriteIgnoringPipeErrors(in_write.get(), server_url);
  in_write.Reset();

  // Read stdout until EOF, the size bound or the deadline; then wait for the exit until the
  // same deadline (a helper may close stdout and keep running).
  std::string output;
  bool too_big = false;
  const auto deadline = std::chrono::steady_clock::now() + options.helper_timeout;
  for (;;) {
    std::chrono::milliseconds left = Left(deadline);
    if (left.count() == 0) break;
    pollfd pfd{out_read.get(), POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    char buf[4096];
    size_t want = std::min(sizeof buf, options.max_helper_output + 1 - output.size());
    ssize_t n = read(out_read.get(), buf, want);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
    if (output.size() > options.max_helper_output) {
      too_big = true;
      break;
    }
  }
  out_read.Reset();
  const bool exited = !too_big && WaitForExit(pid, deadline);
  // The child is not reaped yet, so its pid (= its group id) cannot have been reused.
  if (!exited) kill(-pid, SIGKILL);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (too_big) {
    return absl::UnavailableError(
        absl::StrCat(name, " get: output exceeds ", options.max_helper_output, " bytes; killed"));
  }
  if (!exited) {
    return absl::UnavailableError(absl::StrCat(name, " get: no answer within ",
                                               options.helper_timeout.count(), " ms; killed"));
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    // docker-credential-helpers client/client.go Get: the protocol's "no credentials" answer
    // is an error exit with exactly this message on stdout.
    if (absl::StripAsciiWhitespace(output) == ToAbsl(kCredentialsNotFound)) return Credentials{};
    std::string why = WIFEXITED(wstatus) ? absl::StrCat("exit status ", WEXITSTATUS(wstatus))
                                         : absl::StrCat("signal ", WTERMSIG(wstatus));
    // Never the output itself: a failing helper may still have printed a secret.
    return absl::UnavailableError(
        absl::StrCat(name, " get failed (", why, "); its output is not shown"));
  }
  nlohmann::json json = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
  std::optional<std::string> username, secret;
  if (json.is_object()) {
    username = StringMember(json, "Username");
    secret = StringMember(json, "Secret");
  }
  if (!username || !secret) {
    return absl::UnavailableError(absl::StrCat(name, " get: output is not a credentials object"));
  }
  Credentials creds{*std::move(username), *std::move(secret)};
  if (creds.username == "<token>") return Anonymous();
  return creds;
}

absl::StatusOr<DockerCredentials> DockerCredentials::Load(DockerCredentialsOptions options) {
  std::string path = options.config_path;
  if (path.empty()) {
    if (const char* dir = std::getenv("DOCKER_CONFIG"); dir != nullptr && *dir != '\0') {
      path = absl::StrCat(dir, "/config.json");
    } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
      path = absl::StrCat(home, "/.docker/config.json");
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (path.empty() || !in.is_open()) {
    if (!path.empty() && errno != ENOENT) return Errno("open", path);
    return Parse("{}", std::move(options));
  }
  std::ostringstream text;
  text << in.rdbuf();
  absl::StatusOr<DockerCredentials> creds = Parse(text.str(), std::move(options));
  if (!creds.ok()) {
    return absl::Status(creds.status().code(), absl::StrCat(path, ": ", creds.status().message()));
  }
  return creds;
}

absl::StatusOr<DockerCredentials> DockerCredentials::Parse(std::string_view text,
                                                           DockerCredentialsOptions options) {
  // Types as the docker CLI's json.Unmarshal into its ConfigFile (cli/config/configfile):
  // null is the same as missing, any other wrong type makes the file unreadable. Messages
  // name the field, never its value (it may be a secret).
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return absl::InvalidArgumentError("docker config is not a JSON object");
  auto wrong_type = [](std::string_view field, std::string_view want) {
    return absl::InvalidArgumentError(
        absl::StrCat("docker config: ", ToAbsl(field), " is not ", ToAbsl(want)));
  };
  DockerCredentials out;
  out.options_ = std::move(options);
  std::optional<std::string> store = StringMember(json, "credsStore");
  if (!store) return wrong_type("credsStore", "a string");
  out.creds_store_ = *std::move(store);
  if (auto it = json.find("credHelpers"); it != json.end() && !it->is_null()) {
    if (!it->is_object()) return wrong_type("credHelpers", "an object");
    for (const auto& [host, helper] : it->items()) {
      if (!helper.is_string() && !helper.is_null()) {
        return wrong_type(absl::StrCat("credHelpers[\"", host, "\"]"), "a string");
      }
      out.cred_helpers_[NormaliseHost(host)] = helper.is_null() ? "" : helper.get<std::string>();
    }
  }
  auto auths = json.find("auths");
  if (auths == json.end() || auths->is_null()) return out;
  if (!auths->is_object()) return wrong_type("auths", "an object");
  for (const auto& [host, entry] : auths->items()) {
    const std::string where = absl::StrCat("auths[\"", host, "\"]");
    if (entry.is_null()) continue;
    if (!entry.is_object()) return wrong_type(where, "an object");
    std::optional<std::string> auth = StringMember(entry, "auth");
    std::optional<std::string> username = StringMember(entry, "username");
    std::optional<std::string> password = StringMember(entry, "password");
    std::optional<std::string> identity_token = StringMember(entry, "identitytoken");
    if (!auth || !username || !password || !identity_token) {
      return wrong_type(absl::StrCat(where, " auth, username, password or identitytoken"),
                        "a string");
    }
    Credentials creds;
    if (!auth->empty()) {
      std::string decoded;
      if (!absl::Base64Unescape(*auth, &decoded)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".auth is not base64"));
      }
      size_t colon = decoded.find(':');
      if (colon == std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".auth is not base64(user:password)"));
      }
      creds.username = decoded.substr(0, colon);
      creds.secret = decoded.substr(colon + 1);
    } else {
      creds.username = *std::move(username);
      creds.secret = *std::move(password);
    }
    if (creds.secret.empty() && !identity_token->empty()) creds = Anonymous();
    std::string key = NormaliseHost(host);
    // An exact Docker Hub URL key wins over a sloppy alias.
    if (out.auths_.count(key) == 0 || host == kDockerHubServer) out.auths_[key] = creds;
  }
  return out;
}

absl::StatusOr<Credentials> DockerCredentials::Lookup(std::string_view authority) const {
  std::string host = NormaliseHost(authority);
  std::string helper = creds_store_;
  if (auto it = cred_helpers_.find(host); it != cred_helpers_.end()) helper = it->second;
  if (!helper.empty()) {
    absl::StatusOr<Credentials> creds = RunCredentialHelper(helper, ServerUrlFor(host), options_);
    if (!creds.ok() || !creds->empty()) return creds;
  }
  if (auto it = auths_.find(host); it != auths_.end()) return it->second;
  return Credentials{};
}

CredentialsLookup DockerCredentials::AsLookup() const {
  return [self = *this](std::string_view authority) { return self.Lookup(authority); };
}

}  // namespace zsnap::unpack
