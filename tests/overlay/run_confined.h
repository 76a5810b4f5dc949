// RunConfined: runs a piece of work where recursion or a descriptor per level fails loudly,
// for the tests that feed hostile deep trees to a walk (overlay's tree_walk, the unpacker's
// RemoveAllAt). Shared by the overlay and unpack test binaries; test code only.
//
// The work runs in a forked child, on a thread with a 256 KiB stack and with RLIMIT_NOFILE
// leaving only 16 descriptors free: work that recurses per level overflows that stack, work
// that holds a descriptor per level runs out (EMFILE). A crash is reported, not inherited.
#pragma once

#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"

namespace zsnap::overlay::testing {

// What the confined work reports back through a pipe (so it must be trivially copyable).
struct ConfinedResult {
  bool ok = false;
  int64_t values[2] = {};  // free for the caller (e.g. a disk usage)
  char message[480] = {};
};

inline ConfinedResult FromStatus(const absl::Status& s, int64_t v0 = 0, int64_t v1 = 0) {
  ConfinedResult r{.ok = s.ok(), .values = {v0, v1}};
  std::snprintf(r.message, sizeof(r.message), "%s", s.ToString().c_str());
  return r;
}

namespace internal {
inline void* RunConfinedThread(void* arg) {
  auto* job = static_cast<std::pair<std::function<ConfinedResult()>*, ConfinedResult*>*>(arg);
  *job->second = (*job->first)();
  return nullptr;
}
}  // namespace internal

inline ConfinedResult RunConfined(std::function<ConfinedResult()> work) {
  int fds[2];
  if (pipe(fds) != 0) return FromStatus(absl::InternalError("pipe"));
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    int highest = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      highest = std::max(highest, std::stoi(e.path().filename().string()));
    }
    const rlim_t limit = static_cast<rlim_t>(highest) + 1 + 16;
    const struct rlimit rl = {limit, limit};
    ConfinedResult result = FromStatus(absl::InternalError("setrlimit or thread failed"));
    pthread_attr_t attr;
    pthread_t thread;
    std::pair<std::function<ConfinedResult()>*, ConfinedResult*> job{&work, &result};
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && pthread_attr_init(&attr) == 0 &&
        pthread_attr_setstacksize(&attr, 256 * 1024) == 0 &&
        pthread_create(&thread, &attr, internal::RunConfinedThread, &job) == 0) {
      pthread_join(thread, nullptr);
    }
    (void)!write(fds[1], &result, sizeof(result));
    _exit(0);
  }
  close(fds[1]);
  ConfinedResult result;
  const ssize_t n = read(fds[0], &result, sizeof(result));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (n != static_cast<ssize_t>(sizeof(result))) {
    return FromStatus(absl::InternalError(WIFSIGNALED(status)
                                              ? "confined work crashed with signal " +
                                                    std::to_string(WTERMSIG(status))
                                              : "confined work exited without a result"));
  }
  return result;
}

}  // namespace zsnap::overlay::testing
