// errno -> absl::Status in one place (leveldb's PosixError): every message names the
// operation, the path and the system's reason, e.g. "rename /r/snapshots/new-x: File exists".
//
// Codes: ENOENT -> NotFound, EEXIST/ENOTEMPTY -> AlreadyExists, EACCES/EPERM ->
// PermissionDenied, ENOSPC/EDQUOT -> ResourceExhausted, EISDIR/ENOTDIR -> FailedPrecondition,
// anything else -> Internal. Shared by unpack/ and plugin/ for path-naming errno errors.
//
// Also the early-return macros used inside overlay/ (absl has no public ones).
//
// Stateless; safe from any thread.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace zsnap::overlay {

absl::Status ErrnoStatus(absl::string_view op, absl::string_view path, int err);

}  // namespace zsnap::overlay

#define ZSNAP_OVERLAY_CONCAT_INNER(a, b) a##b
#define ZSNAP_OVERLAY_CONCAT(a, b) ZSNAP_OVERLAY_CONCAT_INNER(a, b)

// Returns the Status of `expr` if it is not OK.
#define ZSNAP_OVERLAY_RETURN_IF_ERROR(expr)                           \
  do {                                                                \
    if (::absl::Status zsnap_status_ = (expr); !zsnap_status_.ok()) { \
      return zsnap_status_;                                           \
    }                                                                 \
  } while (0)

// ZSNAP_OVERLAY_ASSIGN_OR_RETURN(auto x, StatusOrExpr()): declares/assigns x, or returns the
// error.
#define ZSNAP_OVERLAY_ASSIGN_OR_RETURN(lhs, expr) \
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN_IMPL(ZSNAP_OVERLAY_CONCAT(zsnap_statusor_, __LINE__), lhs, expr)
#define ZSNAP_OVERLAY_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                        \
  if (!tmp.ok()) return tmp.status();                       \
  lhs = *std::move(tmp)
