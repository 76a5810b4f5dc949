// The bodies of `zsnap pull` and `zsnap rmi`: pull (or remove) one image through a container
// runtime's CRI image service (cri_client.h), as kubelet does, and the rendering of the
// result — the image ID containerd returns and the wall time of the PullImage call, which is
// what a pod's cold start waits for.
//
// Thread safety: pure apart from the RPCs; calls for different images may run concurrently.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "plugin/cri_client.h"

namespace zsnap::plugin {

// Defaults for --timeout: a cold pull of a multi-GB image takes minutes; a removal does not.
inline constexpr absl::Duration kDefaultPullTimeout = absl::Minutes(10);
inline constexpr absl::Duration kDefaultRemoveTimeout = absl::Minutes(2);

struct PullArgs {
  std::string endpoint;         // unix socket: /path or unix:///path
  std::string image;            // reference, e.g. 127.0.0.1:5000/team/app:v1
  std::optional<CriAuth> auth;  // registry credentials, sent as AuthConfig
  absl::Duration timeout = kDefaultPullTimeout;
};

struct PullResult {
  std::string image;      // as asked
  std::string image_ref;  // what the runtime returned (containerd: the image ID)
  double wall_s = 0;      // wall time of the PullImage call
};

// "USER:PASS" (split at the first ':', so the password may contain ':'); InvalidArgument
// without a ':' or with an empty user.
absl::StatusOr<CriAuth> ParseCreds(absl::string_view user_pass);

// A --timeout value: a Go-style duration ("90s", "10m", "1h30m"); "0" means no deadline.
// InvalidArgument for anything else or a negative duration.
absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text);

absl::StatusOr<PullResult> RunPull(const PullArgs& args);

// Removes `image` through the runtime's CRI image service (absent is success).
absl::Status RunRemoveImage(absl::string_view endpoint, const std::string& image,
                            absl::Duration timeout);

// An aligned key/value table (image, image_ref, wall) ...
std::string FormatPullResult(const PullResult& result);
// ... or one JSON object {"image", "image_ref", "wall_s"}.
nlohmann::json ToJson(const PullResult& result);

}  // namespace zsnap::plugin
