#include "plugin/pull_command.h"

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace zsnap::plugin {

absl::StatusOr<CriAuth> ParseCreds(absl::string_view user_pass) {
  const size_t colon = user_pass.find(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError("--creds wants USER:PASS");
  }
  if (colon == 0) return absl::InvalidArgumentError("--creds: the user name is empty");
  return CriAuth{.username = std::string(user_pass.substr(0, colon)),
                 .password = std::string(user_pass.substr(colon + 1))};
}

absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--timeout wants a duration such as 90s, 10m or 1h30m (0 = none), got '", text, "'"));
  }
  if (d == absl::ZeroDuration()) return absl::InfiniteDuration();
  return d;
}

absl::StatusOr<PullResult> RunPull(const PullArgs& args) {
  absl::StatusOr<std::unique_ptr<CriClient>> client = CriClient::Connect(args.endpoint);
  if (!client.ok()) return client.status();
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> image_ref = (*client)->PullImage(args.image, args.auth, args.timeout);
  const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
  if (!image_ref.ok()) return image_ref.status();
  return PullResult{
      .image = args.image, .image_ref = *std::move(image_ref), .wall_s = wall.count()};
}

absl::Status RunRemoveImage(absl::string_view endpoint, const std::string& image,
                            absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<CriClient>> client = CriClient::Connect(endpoint);
  if (!client.ok()) return client.status();
  return (*client)->RemoveImage(image, timeout);
}

std::string FormatPullResult(const PullResult& r) {
  return absl::StrFormat("%-10s %s\n%-10s %s\n%-10s %.3f s\n", "image", r.image, "image_ref",
                         r.image_ref, "wall", r.wall_s);
}

nlohmann::json ToJson(const PullResult& r) {
  return {{"image", r.image}, {"image_ref", r.image_ref}, {"wall_s", r.wall_s}};
}

}  // namespace zsnap::plugin
