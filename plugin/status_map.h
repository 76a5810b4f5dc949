// The one mapping between domain errors (absl::Status) and the wire (grpc::Status).
//
// absl::StatusCode and grpc::StatusCode use the same numbers (both are the canonical gRPC
// codes), so the mapping is the identity on codes and keeps the message. containerd's
// client turns the code back into its error classes (errdefs.FromGRPC / errgrpc.ToNative),
// so the code chosen in overlay/ and unpack/ is exactly what containerd sees.
//
// Thread safety: pure functions.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace zsnap::plugin {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace zsnap::plugin
