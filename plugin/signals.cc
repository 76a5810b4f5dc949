#include "plugin/signals.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace zsnap::plugin {
namespace {

absl::Status ErrnoStatus(absl::string_view op, int err) {
  return absl::InternalError(absl::StrCat(op, ": ", std::strerror(err)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SignalWatcher>> SignalWatcher::Start(
    std::function<void(int)> on_signal) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigset_t old_mask;
  if (int err = pthread_sigmask(SIG_BLOCK, &set, &old_mask); err != 0) {
    return ErrnoStatus("pthread_sigmask(SIG_BLOCK, {SIGINT, SIGTERM})", err);
  }
  const int signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
  if (signal_fd < 0) {
    const int err = errno;
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return ErrnoStatus("signalfd", err);
  }
  const int wake_fd = eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int err = errno;
    close(signal_fd);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return ErrnoStatus("eventfd", err);
  }
  return std::unique_ptr<SignalWatcher>(
      new SignalWatcher(signal_fd, wake_fd, old_mask, std::move(on_signal)));
}

SignalWatcher::SignalWatcher(int signal_fd, int wake_fd, const sigset_t& old_mask,
                             std::function<void(int)> on_signal)
    : signal_fd_(signal_fd),
      wake_fd_(wake_fd),
      old_mask_(old_mask),
      on_signal_(std::move(on_signal)),
      thread_([this](std::stop_token stop) { Run(stop); }) {}

SignalWatcher::~SignalWatcher() {
  thread_.request_stop();
  const uint64_t one = 1;
  // An eventfd write of 1 cannot fail short of a counter overflow, which one write avoids.
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
  thread_.join();
  close(wake_fd_);
  close(signal_fd_);
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

void SignalWatcher::Run(const std::stop_token& stop) {
  while (!stop.stop_requested()) {
    pollfd fds[2] = {{.fd = signal_fd_, .events = POLLIN, .revents = 0},
                     {.fd = wake_fd_, .events = POLLIN, .revents = 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("signal watcher: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    signalfd_siginfo info;
    const ssize_t n = read(signal_fd_, &info, sizeof(info));
    if (n != static_cast<ssize_t>(sizeof(info))) continue;  // EINTR/EAGAIN: poll again
    on_signal_(static_cast<int>(info.ssi_signo));
  }
}

}  // namespace zsnap::plugin
