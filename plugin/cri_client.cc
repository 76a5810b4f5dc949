#include "plugin/cri_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "plugin/server.h"
#include "plugin/status_map.h"

namespace zsnap::plugin {
namespace {

constexpr absl::string_view kUnixScheme = "unix://";

// Past a year a deadline means "none" (and cannot overflow the clock arithmetic).
constexpr absl::Duration kLongestDeadline = absl::Hours(24 * 365);

void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  if (timeout > kLongestDeadline) return;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

// The runtime's status with what was asked of whom in front, and for the codes that mean
// "wrong place" a hint at the usual cause. The code is kept.
absl::Status CallError(const grpc::Status& status, absl::string_view rpc, absl::string_view image,
                       absl::string_view endpoint, absl::Duration timeout) {
  const absl::Status s = FromGrpcStatus(status);
  std::string hint;
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
      hint = " (is containerd, or another CRI runtime, listening there?)";
      break;
    case absl::StatusCode::kUnimplemented:
      hint = " (the runtime does not serve runtime.v1.ImageService: is its CRI plugin disabled?)";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      hint = absl::StrCat(" (no answer within ", absl::FormatDuration(timeout), ")");
      break;
    default:
      break;
  }
  return absl::Status(s.code(),
                      absl::StrCat(rpc, " ", image, " on ", endpoint, ": ", s.message(), hint));
}

}  // namespace

absl::StatusOr<std::string> CriTarget(absl::string_view endpoint) {
  absl::string_view path = endpoint;
  if (absl::StartsWith(path, kUnixScheme)) {
    path.remove_prefix(kUnixScheme.size());
  } else if (path.find("://") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CRI endpoint '", endpoint, "': only unix sockets are supported (unix:///path or /path)"));
  }
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "CRI endpoint '", endpoint, "': want an absolute socket path (unix:///path or /path)"));
  }
  return absl::StrCat(kUnixScheme, path);
}

absl::StatusOr<std::unique_ptr<CriClient>> CriClient::Connect(absl::string_view endpoint) {
  absl::StatusOr<std::string> target = CriTarget(endpoint);
  if (!target.ok()) return target.status();
  grpc::ChannelArguments args;
  // Image status with verbose info can be large; kubelet allows 16 MiB too.
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(*target, grpc::InsecureChannelCredentials(), args);
  std::string path = target->substr(kUnixScheme.size());
  return std::unique_ptr<CriClient>(
      new CriClient(std::move(path), runtime::v1::ImageService::NewStub(channel)));
}

absl::StatusOr<std::string> CriClient::PullImage(const std::string& image,
                                                 const std::optional<CriAuth>& auth,
                                                 absl::Duration timeout) {
  runtime::v1::PullImageRequest req;
  req.mutable_image()->set_image(image);
  if (auth.has_value()) {
    req.mutable_auth()->set_username(auth->username);
    req.mutable_auth()->set_password(auth->password);
  }
  runtime::v1::PullImageResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  if (grpc::Status s = stub_->PullImage(&ctx, req, &resp); !s.ok()) {
    return CallError(s, "PullImage", image, endpoint_, timeout);
  }
  if (resp.image_ref().empty()) {
    return absl::InternalError(absl::StrCat("PullImage ", image, " on ", endpoint_,
                                            ": the runtime answered without an image_ref"));
  }
  return resp.image_ref();
}

absl::StatusOr<std::optional<CriImage>> CriClient::ImageStatus(const std::string& image,
                                                               absl::Duration timeout) {
  runtime::v1::ImageStatusRequest req;
  req.mutable_image()->set_image(image);
  runtime::v1::ImageStatusResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  if (grpc::Status s = stub_->ImageStatus(&ctx, req, &resp); !s.ok()) {
    return CallError(s, "ImageStatus", image, endpoint_, timeout);
  }
  if (!resp.has_image()) return std::nullopt;
  const runtime::v1::Image& img = resp.image();
  return CriImage{
      .id = img.id(),
      .repo_tags = {img.repo_tags().begin(), img.repo_tags().end()},
      .repo_digests = {img.repo_digests().begin(), img.repo_digests().end()},
      .size = img.size(),
  };
}

absl::Status CriClient::RemoveImage(const std::string& image, absl::Duration timeout) {
  runtime::v1::RemoveImageRequest req;
  req.mutable_image()->set_image(image);
  runtime::v1::RemoveImageResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  if (grpc::Status s = stub_->RemoveImage(&ctx, req, &resp); !s.ok()) {
    return CallError(s, "RemoveImage", image, endpoint_, timeout);
  }
  return absl::OkStatus();
}

}  // namespace zsnap::plugin
