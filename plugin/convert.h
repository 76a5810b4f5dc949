// Conversions between the wire messages of containerd's Snapshots API (proto/) and the
// domain values of overlay/types.h. Pure functions, no validation beyond what the wire
// forces; the Snapshotter decides what is valid.
//
// Rules from containerd-api.md §1.3: an outgoing Info always carries its kind explicitly
// (containerd reads UNKNOWN as Committed) and both timestamps with full nanosecond
// precision (1.7+/2.x clients dereference them unchecked); outgoing Mounts leave `target`
// empty.
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "containerd/services/snapshots/v1/snapshots.pb.h"
#include "containerd/types/mount.pb.h"
#include "google/protobuf/map.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "overlay/types.h"

namespace zsnap::plugin {

namespace snapshotsv1 = ::containerd::services::snapshots::v1;

// absl::Time <-> Timestamp, exact to the nanosecond. Times outside the Timestamp range
// (years 1..9999) are clamped to its ends.
void TimeToProto(absl::Time t, google::protobuf::Timestamp* out);
absl::Time TimeFromProto(const google::protobuf::Timestamp& ts);

snapshotsv1::Kind KindToProto(overlay::Kind kind);
overlay::Kind KindFromProto(snapshotsv1::Kind kind);

overlay::Labels LabelsFromProto(const google::protobuf::Map<std::string, std::string>& labels);
void LabelsToProto(const overlay::Labels& labels,
                   google::protobuf::Map<std::string, std::string>* out);

void InfoToProto(const overlay::Info& info, snapshotsv1::Info* out);
// Missing timestamps in `info` become the Unix epoch; the Snapshotter ignores them on Update.
overlay::Info InfoFromProto(const snapshotsv1::Info& info);

void MountsToProto(const std::vector<overlay::Mount>& mounts,
                   google::protobuf::RepeatedPtrField<::containerd::types::Mount>* out);
std::vector<overlay::Mount> MountsFromProto(
    const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& mounts);

void UsageToProto(const overlay::Usage& usage, snapshotsv1::UsageResponse* out);

}  // namespace zsnap::plugin
