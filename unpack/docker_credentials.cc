#include "unpack/docker_credentials.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
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

// Writes all of `data` to a pipe without dying of SIGPIPE if the reader already exited.
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

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_read.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::string arg0 = program, arg1 = "get";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    errno = rc;
    return Errno("spawn", program);
  }
  in_read.Reset();
  out_write.Reset();
  WriteIgnoringPipeErrors(in_write.get(), server_url);
  in_write.Reset();

  // Read stdout until EOF, the size bound or the deadline.
  std::string output;
  bool timed_out = false, too_big = false;
  auto deadline = std::chrono::steady_clock::now() + options.helper_timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{out_read.get(), POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      timed_out = true;
      break;
    }
    char buf[4096];
    ssize_t n = read(out_read.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
    if (output.size() > options.max_helper_output) {
      too_big = true;
      break;
    }
  }
  if (timed_out || too_big) kill(pid, SIGKILL);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::UnavailableError(absl::StrCat(name, " get: no answer within ",
                                               options.helper_timeout.count(), " ms; killed"));
  }
  if (too_big) {
    return absl::UnavailableError(
        absl::StrCat(name, " get: output exceeds ", options.max_helper_output, " bytes"));
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    // The protocol's "no credentials" answer is an error exit with this message on stdout.
    if (absl::StrContains(absl::AsciiStrToLower(output), "credentials not found")) {
      return Credentials{};
    }
    std::string why = WIFEXITED(wstatus) ? absl::StrCat("exit status ", WEXITSTATUS(wstatus))
                                         : absl::StrCat("signal ", WTERMSIG(wstatus));
    return absl::UnavailableError(absl::StrCat(
        name, " get failed (", why, "): ", absl::StripAsciiWhitespace(output.substr(0, 200))));
  }
  nlohmann::json json = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.value("Secret", nlohmann::json()).is_string()) {
    return absl::UnavailableError(absl::StrCat(name, " get: output is not a credentials object"));
  }
  Credentials creds;
  creds.username = json.value("Username", "");
  creds.secret = json.value("Secret", "");
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
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return absl::InvalidArgumentError("docker config is not a JSON object");
  DockerCredentials out;
  out.options_ = std::move(options);
  if (auto it = json.find("credsStore"); it != json.end() && it->is_string()) {
    out.creds_store_ = it->get<std::string>();
  }
  if (auto it = json.find("credHelpers"); it != json.end() && it->is_object()) {
    for (const auto& [host, helper] : it->items()) {
      if (helper.is_string()) out.cred_helpers_[NormaliseHost(host)] = helper.get<std::string>();
    }
  }
  if (auto it = json.find("auths"); it != json.end() && it->is_object()) {
    for (const auto& [host, entry] : it->items()) {
      if (!entry.is_object()) continue;
      Credentials creds;
      std::string auth = entry.value("auth", "");
      if (!auth.empty()) {
        std::string decoded;
        if (!absl::Base64Unescape(auth, &decoded)) {
          return absl::InvalidArgumentError(
              absl::StrCat("auths[\"", host, "\"].auth is not base64"));
        }
        size_t colon = decoded.find(':');
        if (colon == std::string::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat("auths[\"", host, "\"].auth is not base64(user:password)"));
        }
        creds.username = decoded.substr(0, colon);
        creds.secret = decoded.substr(colon + 1);
      } else {
        creds.username = entry.value("username", "");
        creds.secret = entry.value("password", "");
      }
      if (creds.secret.empty() && !entry.value("identitytoken", "").empty()) creds = Anonymous();
      std::string key = NormaliseHost(host);
      // An exact Docker Hub URL key wins over a sloppy alias.
      if (out.auths_.count(key) == 0 || host == kDockerHubServer) out.auths_[key] = creds;
    }
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
