// SignalWatcher: turns SIGINT/SIGTERM into a callback on an ordinary thread.
//
// Start() blocks both signals in the calling thread, so every thread created afterwards
// (gRPC's, the Snapshotter's, the unpack pipeline's) inherits the blocked mask and the
// kernel queues the signals on a signalfd. A dedicated thread polls that signalfd and calls
// `on_signal(signo)` there, so the callback may log, lock and notify freely: nothing runs in
// an async-signal context.
//
// Create it first thing in a command, before any other thread exists; a thread started
// earlier still has the signals unblocked and would take the default action (exit).
//
// Ownership/thread safety: destroy it on the thread that started it (the destructor stops
// and joins the watcher thread, then restores that thread's signal mask). on_signal runs on
// the watcher thread, once per delivered signal.
#pragma once

#include <csignal>
#include <functional>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"

namespace zsnap::plugin {

class SignalWatcher {
 public:
  static absl::StatusOr<std::unique_ptr<SignalWatcher>> Start(std::function<void(int)> on_signal);
  ~SignalWatcher();

  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  SignalWatcher(int signal_fd, int wake_fd, const sigset_t& old_mask,
                std::function<void(int)> on_signal);
  void Run(const std::stop_token& stop);

  const int signal_fd_;
  const int wake_fd_;  // eventfd written by the destructor to end Run()
  const sigset_t old_mask_;
  const std::function<void(int)> on_signal_;
  std::jthread thread_;  // last: started after every other member is set
};

}  // namespace zsnap::plugin
