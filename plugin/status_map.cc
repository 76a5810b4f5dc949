#include "plugin/status_map.h"

#include <string>

namespace zsnap::plugin {
namespace {

// Both enums are the canonical gRPC code space; pin that down for every code so a library
// change cannot silently skew the mapping.
constexpr bool Same(absl::StatusCode a, grpc::StatusCode g) {
  return static_cast<int>(a) == static_cast<int>(g);
}
static_assert(Same(absl::StatusCode::kOk, grpc::StatusCode::OK));
static_assert(Same(absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED));
static_assert(Same(absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN));
static_assert(Same(absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT));
static_assert(Same(absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED));
static_assert(Same(absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND));
static_assert(Same(absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS));
static_assert(Same(absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED));
static_assert(Same(absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED));
static_assert(Same(absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION));
static_assert(Same(absl::StatusCode::kAborted, grpc::StatusCode::ABORTED));
static_assert(Same(absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE));
static_assert(Same(absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED));
static_assert(Same(absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL));
static_assert(Same(absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE));
static_assert(Same(absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS));
static_assert(Same(absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED));

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  int code = static_cast<int>(status.code());
  // absl may carry codes outside the canonical range (StatusCode is open); those become
  // UNKNOWN, which containerd also maps to ErrUnknown.
  if (code < 0 || code > static_cast<int>(grpc::StatusCode::UNAUTHENTICATED)) {
    code = static_cast<int>(grpc::StatusCode::UNKNOWN);
  }
  return grpc::Status(static_cast<grpc::StatusCode>(code), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  int code = static_cast<int>(status.error_code());
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<int>(absl::StatusCode::kUnknown);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), status.error_message());
}

}  // namespace zsnap::plugin
