#include "unpack/wait_context.h"

#include "absl/time/clock.h"

namespace zsnap::unpack {

absl::Status WaitContext::Check() const {
  if (cancelled && cancelled()) return absl::CancelledError("the Prepare call was cancelled");
  if (absl::Now() >= deadline) {
    return absl::DeadlineExceededError("the Prepare call's deadline passed");
  }
  return absl::OkStatus();
}

}  // namespace zsnap::unpack
