// The body of `zsnap unpack`: one layer blob (a file or stdin) into a directory through
// unpack::UnpackLayer, and the human rendering of its timing record.
//
// Thread safety: pure apart from the unpack itself; RunUnpack may run concurrently for
// different destinations.
#pragma once

#include <optional>
#include <stop_token>
#include <string>

#include "absl/status/statusor.h"
#include "plugin/config.h"
#include "unpack/timing.h"

namespace zsnap::plugin {

struct UnpackArgs {
  std::string blob;                    // path, or "-" for stdin
  std::string dest;                    // created if missing; must be empty otherwise
  std::string media_type;              // empty: detect the codec from the stream
  std::optional<std::string> digest;   // expected sha256 of the blob
  std::optional<std::string> diff_id;  // expected sha256 of the tar stream
  std::optional<int> threads;          // writer threads; unset: config (0 = auto)
  UnpackConfig limits;                 // from [unpack] of --config, or defaults
  bool userxattr = false;              // opaque markers as user.overlay.opaque
};

// Runs the unpack; `stop` cancels it (the partial output is removed).
absl::StatusOr<unpack::LayerTiming> RunUnpack(const UnpackArgs& args, std::stop_token stop);

// A small aligned table: what, how much, and where the time went per stage.
std::string FormatTimingTable(const unpack::LayerTiming& timing);

}  // namespace zsnap::plugin
