#include "overlay/labels.h"

#include "absl/strings/str_format.h"

namespace zsnap::overlay {

absl::Status ValidateLabels(const Labels& labels) {
  for (const auto& [key, value] : labels) {
    if (key.size() + value.size() > kMaxLabelBytes) {
      // Only a prefix of the key: the whole thing may be kilobytes of junk.
      constexpr size_t kShownKeyBytes = 10;
      return absl::InvalidArgumentError(
          absl::StrFormat("label key and value greater than maximum size (%d bytes), key: %s",
                          kMaxLabelBytes, key.substr(0, kShownKeyBytes)));
    }
  }
  return absl::OkStatus();
}

Labels DropEmptyLabels(Labels labels) {
  std::erase_if(labels, [](const auto& entry) { return entry.second.empty(); });
  return labels;
}

}  // namespace zsnap::overlay
