// OCI whiteouts to overlayfs form, as containerd's archive.OverlayConvertWhiteout does:
//   `dir/.wh..wh..opq` -> xattr trusted.overlay.opaque=y on `dir`
//                         (user.overlay.opaque=y when overlayfs is mounted with userxattr)
//   `dir/.wh.<name>`   -> a 0/0 character device `dir/<name>`, owned by the entry's uid/gid
// Neither removes anything: in a fresh layer directory there is nothing below to remove, and
// an existing `<name>` makes the whiteout fail (EEXIST) exactly as containerd's mknod does.
//
// Stateless; thread-safe.
#pragma once

#include <sys/types.h>

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zsnap::unpack {

inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

enum class WhiteoutKind { kNone, kOpaque, kWhiteout };

// Classifies an entry by its last path component. For kWhiteout, `hidden` receives the name
// the whiteout hides. InvalidArgument for a whiteout that would hide its own directory or
// nothing (".wh.", ".wh..", ".wh...": containerd's "invalid whiteout name").
absl::StatusOr<WhiteoutKind> ClassifyWhiteout(std::string_view base, std::string_view& hidden);

// Marks the directory `dirfd` (opened for reading) opaque.
absl::Status ApplyOpaque(int dirfd, bool userxattr);

// Creates the whiteout device `name` (NUL-terminated) in `dirfd`, owned by uid:gid.
absl::Status ApplyWhiteout(int dirfd, const char* name, uid_t uid, gid_t gid);

}  // namespace zsnap::unpack
