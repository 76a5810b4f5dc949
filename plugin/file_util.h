// Reading a small file whole, with an upper bound on its size (config files, reports).
//
// Stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace zsnap::plugin {

// The contents of `path`. Errors name the path and the system's reason (overlay::ErrnoStatus:
// NotFound, PermissionDenied, ...); InvalidArgument when the file exceeds `max_bytes`.
// With `follow_symlinks` false a symbolic link at `path` is an error (ELOOP).
absl::StatusOr<std::string> ReadBoundedFile(const std::string& path, size_t max_bytes,
                                            bool follow_symlinks = true);

}  // namespace zsnap::plugin
