// errno -> absl::Status for the tar extractor's syscalls, in one place (leveldb's PosixError idea):
// the message names the operation and says why ("mknod: Operation not permitted"); the entry
// name is added by the caller with EntryError so every extraction error names its entry.
//
// Stateless helpers; thread-safe.
#pragma once

#include <cerrno>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace zsnap::unpack {

// Debian's Abseil has its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW=0).
inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

// `op` failed with `err` (an errno value).
inline absl::Status SyscallError(std::string_view op, int err) {
  return absl::ErrnoToStatus(err, ToAbsl(op));
}

// Prefixes `status` with the tar entry it concerns: entry "usr/bin/x": <message>.
inline absl::Status EntryError(std::string_view entry, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat("entry \"", ToAbsl(entry), "\": ", status.message()));
}

}  // namespace zsnap::unpack
