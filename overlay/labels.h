// Label rules shared by every operation that stores labels (containerd labels/validate.go
// and metadata/boltutil writeMap):
//  * one label's key + value may hold at most kMaxLabelBytes bytes, else InvalidArgument;
//  * a label whose value is empty is not stored: it means "absent".
//
// Pure functions; safe from any thread.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "overlay/types.h"

namespace zsnap::overlay {

inline constexpr size_t kMaxLabelBytes = 4096;

// OK if every label is within kMaxLabelBytes; InvalidArgument naming the (truncated) key if not.
absl::Status ValidateLabels(const Labels& labels);

// `labels` without the entries whose value is empty.
Labels DropEmptyLabels(Labels labels);

}  // namespace zsnap::overlay
