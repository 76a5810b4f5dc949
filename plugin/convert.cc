#include "plugin/convert.h"

#include <cstdint>

namespace zsnap::plugin {
namespace {

// google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

}  // namespace

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out) {
  if (t < absl::FromUnixSeconds(kMinTimestampSeconds)) {
    out->set_seconds(kMinTimestampSeconds);
    out->set_nanos(0);
    return;
  }
  if (t > absl::FromUnixSeconds(kMaxTimestampSeconds) + absl::Nanoseconds(999'999'999)) {
    out->set_seconds(kMaxTimestampSeconds);
    out->set_nanos(999'999'999);
    return;
  }
  // ToUnixSeconds floors, so the remainder is in [0, 1s) as Timestamp requires even for
  // times before 1970.
  const int64_t seconds = absl::ToUnixSeconds(t);
  const int64_t nanos = absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds));
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(nanos));
}

absl::Time TimeFromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

snapshotsv1::Kind KindToProto(overlay::Kind kind) {
  switch (kind) {
    case overlay::Kind::kView:
      return snapshotsv1::VIEW;
    case overlay::Kind::kActive:
      return snapshotsv1::ACTIVE;
    case overlay::Kind::kCommitted:
      return snapshotsv1::COMMITTED;
    case overlay::Kind::kUnknown:
      break;
  }
  return snapshotsv1::UNKNOWN;
}

overlay::Kind KindFromProto(snapshotsv1::Kind kind) {
  switch (kind) {
    case snapshotsv1::VIEW:
      return overlay::Kind::kView;
    case snapshotsv1::ACTIVE:
      return overlay::Kind::kActive;
    case snapshotsv1::COMMITTED:
      return overlay::Kind::kCommitted;
    default:
      return overlay::Kind::kUnknown;
  }
}

overlay::Labels LabelsFromProto(const google::protobuf::Map<std::string, std::string>& labels) {
  return overlay::Labels(labels.begin(), labels.end());
}

void LabelsToProto(const overlay::Labels& labels,
                   google::protobuf::Map<std::string, std::string>* out) {
  out->clear();
  for (const auto& [key, value] : labels) (*out)[key] = value;
}

void InfoToProto(const overlay::Info& info, snapshotsv1::Info* out) {
  out->set_name(info.name);
  out->set_parent(info.parent);
  out->set_kind(KindToProto(info.kind));
  TimeToProto(info.created, out->mutable_created_at());
  TimeToProto(info.updated, out->mutable_updated_at());
  LabelsToProto(info.labels, out->mutable_labels());
}

overlay::Info InfoFromProto(const snapshotsv1::Info& info) {
  overlay::Info out;
  out.name = info.name();
  out.parent = info.parent();
  out.kind = KindFromProto(info.kind());
  out.created = TimeFromProto(info.created_at());
  out.updated = TimeFromProto(info.updated_at());
  out.labels = LabelsFromProto(info.labels());
  return out;
}

void MountsToProto(const std::vector<overlay::Mount>& mounts,
                   google::protobuf::RepeatedPtrField<::containerd::types::Mount>* out) {
  out->Clear();
  out->Reserve(static_cast<int>(mounts.size()));
  for (const overlay::Mount& m : mounts) {
    ::containerd::types::Mount* pm = out->Add();
    pm->set_type(m.type);
    pm->set_source(m.source);
    // target stays empty: 1.7+ clients would treat it as a sub-mount point.
    for (const std::string& option : m.options) pm->add_options(option);
  }
}

std::vector<overlay::Mount> MountsFromProto(
    const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& mounts) {
  std::vector<overlay::Mount> out;
  out.reserve(mounts.size());
  for (const ::containerd::types::Mount& pm : mounts) {
    out.push_back(overlay::Mount{
        .type = pm.type(),
        .source = pm.source(),
        .options = std::vector<std::string>(pm.options().begin(), pm.options().end()),
    });
  }
  return out;
}

void UsageToProto(const overlay::Usage& usage, snapshotsv1::UsageResponse* out) {
  out->set_size(usage.size);
  out->set_inodes(usage.inodes);
}

}  // namespace zsnap::plugin
