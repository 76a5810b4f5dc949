// WaitContext: how long a caller is willing to wait and how to tell that it gave up — the
// gRPC ServerContext's deadline and IsCancelled(), carried from plugin/snapshots_service.cc
// down to the LayerPuller's waits without the unpack code seeing gRPC.
//
// Thread safety: a plain value; `cancelled` must be safe to call from the waiting thread.
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace zsnap::unpack {

struct WaitContext {
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> cancelled;  // polled every kCancelPoll while waiting; may be empty

  static constexpr absl::Duration kCancelPoll = absl::Milliseconds(50);

  // Cancelled or DeadlineExceeded once the caller gave up, else OK.
  absl::Status Check() const;
};

}  // namespace zsnap::unpack
