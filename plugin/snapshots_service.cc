#include "plugin/snapshots_service.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "plugin/convert.h"
#include "plugin/logging.h"
#include "plugin/status_map.h"

namespace zsnap::plugin {
namespace {

// Codes that mean the daemon, not the caller, is in trouble: worth a louder level.
bool IsServerFault(absl::StatusCode code) {
  return code == absl::StatusCode::kUnknown || code == absl::StatusCode::kInternal ||
         code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kUnavailable;
}

// Logs one RPC's outcome: the operation's own fields plus code, error and duration.
void LogRpc(bool mutating, absl::string_view op, absl::Time start, const absl::Status& status,
            std::vector<LogField> fields) {
  spdlog::level::level_enum level = mutating ? spdlog::level::info : spdlog::level::debug;
  if (IsServerFault(status.code())) level = spdlog::level::err;
  const std::string code = absl::StatusCodeToString(status.code());
  const std::string ms = absl::StrFormat("%.3f", absl::ToDoubleMilliseconds(absl::Now() - start));
  fields.emplace_back("code", code);
  if (!status.ok()) fields.emplace_back("error", status.message());
  fields.emplace_back("ms", ms);
  LogEvent(level, op, fields);
}

}  // namespace

grpc::Status SnapshotsService::Prepare(grpc::ServerContext*,
                                       const snapshotsv1::PrepareSnapshotRequest* req,
                                       snapshotsv1::PrepareSnapshotResponse* resp) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<overlay::Mount>> mounts =
      snapshotter_.Prepare(req->key(), req->parent(), LabelsFromProto(req->labels()));
  LogRpc(true, "prepare", start, mounts.status(), {{"key", req->key()}, {"parent", req->parent()}});
  if (!mounts.ok()) return ToGrpcStatus(mounts.status());
  MountsToProto(*mounts, resp->mutable_mounts());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::View(grpc::ServerContext*,
                                    const snapshotsv1::ViewSnapshotRequest* req,
                                    snapshotsv1::ViewSnapshotResponse* resp) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<overlay::Mount>> mounts =
      snapshotter_.View(req->key(), req->parent(), LabelsFromProto(req->labels()));
  LogRpc(true, "view", start, mounts.status(), {{"key", req->key()}, {"parent", req->parent()}});
  if (!mounts.ok()) return ToGrpcStatus(mounts.status());
  MountsToProto(*mounts, resp->mutable_mounts());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Mounts(grpc::ServerContext*, const snapshotsv1::MountsRequest* req,
                                      snapshotsv1::MountsResponse* resp) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<overlay::Mount>> mounts = snapshotter_.Mounts(req->key());
  LogRpc(false, "mounts", start, mounts.status(), {{"key", req->key()}});
  if (!mounts.ok()) return ToGrpcStatus(mounts.status());
  MountsToProto(*mounts, resp->mutable_mounts());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Commit(grpc::ServerContext*,
                                      const snapshotsv1::CommitSnapshotRequest* req,
                                      google::protobuf::Empty*) {
  const absl::Time start = absl::Now();
  const absl::Status status =
      snapshotter_.Commit(req->name(), req->key(), LabelsFromProto(req->labels()), req->parent());
  LogRpc(true, "commit", start, status,
         {{"key", req->key()}, {"name", req->name()}, {"parent", req->parent()}});
  return ToGrpcStatus(status);
}

grpc::Status SnapshotsService::Remove(grpc::ServerContext*,
                                      const snapshotsv1::RemoveSnapshotRequest* req,
                                      google::protobuf::Empty*) {
  const absl::Time start = absl::Now();
  const absl::Status status = snapshotter_.Remove(req->key());
  LogRpc(true, "remove", start, status, {{"key", req->key()}});
  return ToGrpcStatus(status);
}

grpc::Status SnapshotsService::Stat(grpc::ServerContext*,
                                    const snapshotsv1::StatSnapshotRequest* req,
                                    snapshotsv1::StatSnapshotResponse* resp) {
  const absl::Time start = absl::Now();
  absl::StatusOr<overlay::Info> info = snapshotter_.Stat(req->key());
  LogRpc(false, "stat", start, info.status(), {{"key", req->key()}});
  if (!info.ok()) return ToGrpcStatus(info.status());
  InfoToProto(*info, resp->mutable_info());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Update(grpc::ServerContext*,
                                      const snapshotsv1::UpdateSnapshotRequest* req,
                                      snapshotsv1::UpdateSnapshotResponse* resp) {
  const absl::Time start = absl::Now();
  const std::vector<std::string> paths(req->update_mask().paths().begin(),
                                       req->update_mask().paths().end());
  absl::StatusOr<overlay::Info> info = snapshotter_.Update(InfoFromProto(req->info()), paths);
  const std::string joined = absl::StrJoin(paths, ",");
  LogRpc(true, "update", start, info.status(), {{"key", req->info().name()}, {"paths", joined}});
  if (!info.ok()) return ToGrpcStatus(info.status());
  InfoToProto(*info, resp->mutable_info());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::List(
    grpc::ServerContext*, const snapshotsv1::ListSnapshotsRequest* req,
    grpc::ServerWriter<snapshotsv1::ListSnapshotsResponse>* writer) {
  const absl::Time start = absl::Now();
  const std::vector<std::string> filters(req->filters().begin(), req->filters().end());
  absl::StatusOr<std::vector<overlay::Info>> infos = snapshotter_.List(filters);
  const std::string joined = absl::StrJoin(filters, " | ");
  const std::string count = infos.ok() ? absl::StrCat(infos->size()) : "0";
  LogRpc(false, "list", start, infos.status(), {{"filters", joined}, {"count", count}});
  if (!infos.ok()) return ToGrpcStatus(infos.status());
  // The store answered from one transaction; the stream is written without holding anything.
  snapshotsv1::ListSnapshotsResponse batch;
  for (const overlay::Info& info : *infos) {
    InfoToProto(info, batch.add_info());
    if (batch.info_size() == kListBatchSize) {
      if (!writer->Write(batch)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
      batch.Clear();
    }
  }
  if (batch.info_size() > 0 && !writer->Write(batch)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  }
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Usage(grpc::ServerContext*, const snapshotsv1::UsageRequest* req,
                                     snapshotsv1::UsageResponse* resp) {
  const absl::Time start = absl::Now();
  absl::StatusOr<overlay::Usage> usage = snapshotter_.GetUsage(req->key());
  LogRpc(false, "usage", start, usage.status(), {{"key", req->key()}});
  if (!usage.ok()) return ToGrpcStatus(usage.status());
  UsageToProto(*usage, resp);
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Cleanup(grpc::ServerContext*, const snapshotsv1::CleanupRequest*,
                                       google::protobuf::Empty*) {
  const absl::Time start = absl::Now();
  const absl::Status status = snapshotter_.Cleanup();
  LogRpc(true, "cleanup", start, status, {});
  return ToGrpcStatus(status);
}

}  // namespace zsnap::plugin
