// CriClient: a client of the Kubernetes CRI image service (runtime.v1.ImageService) on a
// container runtime's unix socket — the calls kubelet makes on containerd's CRI plugin to
// pull, inspect and remove images, so zsnap's tests and benchmark drive containerd the way
// an EKS node does.
//
// The endpoint is a unix socket, given as a path ("/run/containerd/containerd.sock") or in
// kubelet's form ("unix:///run/containerd/containerd.sock"). Connect() only validates it and
// builds the channel; the socket is dialled by the first call. Every call takes a timeout;
// absl::InfiniteDuration() (or anything past a year) means no deadline.
//
// Errors keep the runtime's gRPC code and carry its message, prefixed with what was asked of
// whom: "PullImage docker.io/x:1 on /run/containerd/containerd.sock: <containerd's text>".
// Unavailable and Unimplemented say what usually causes them (runtime not running, CRI
// plugin disabled).
//
// Thread safety: a CriClient may be used from several threads at once (gRPC stubs are).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cri/runtime/v1/api.grpc.pb.h"

namespace zsnap::plugin {

// Registry credentials sent with PullImage (AuthConfig.username / .password).
struct CriAuth {
  std::string username;
  std::string password;
};

// What ImageStatus reports about a present image.
struct CriImage {
  std::string id;  // containerd: the config digest
  std::vector<std::string> repo_tags;
  std::vector<std::string> repo_digests;
  uint64_t size = 0;
};

// The gRPC target for a CRI endpoint: "/abs/path" and "unix:///abs/path" become
// "unix:///abs/path". InvalidArgument for other schemes (tcp://, npipe://), relative paths
// and an empty endpoint.
absl::StatusOr<std::string> CriTarget(absl::string_view endpoint);

class CriClient {
 public:
  static absl::StatusOr<std::unique_ptr<CriClient>> Connect(absl::string_view endpoint);

  // Pulls `image` (a reference as kubelet passes it) and returns containerd's image_ref (the
  // image ID, sha256:...).
  absl::StatusOr<std::string> PullImage(const std::string& image,
                                        const std::optional<CriAuth>& auth, absl::Duration timeout);
  // The image's status, or nullopt if the runtime does not have it.
  absl::StatusOr<std::optional<CriImage>> ImageStatus(const std::string& image,
                                                      absl::Duration timeout);
  // Removes the image (by reference or ID). Not having it is success, as in CRI.
  absl::Status RemoveImage(const std::string& image, absl::Duration timeout);

  // The socket path, as it appears in messages.
  const std::string& endpoint() const { return endpoint_; }

 private:
  CriClient(std::string endpoint, std::unique_ptr<runtime::v1::ImageService::Stub> stub)
      : endpoint_(std::move(endpoint)), stub_(std::move(stub)) {}

  const std::string endpoint_;
  const std::unique_ptr<runtime::v1::ImageService::Stub> stub_;
};

}  // namespace zsnap::plugin
