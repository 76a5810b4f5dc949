// SnapshotsService: containerd.services.snapshots.v1.Snapshots over an overlay::Snapshotter.
//
// A thin adapter in the manner of containerd's contrib/snapshotservice/service.go: each RPC
// converts the request (convert.h), calls the Snapshotter, maps the error (status_map.h)
// and converts the result back. No snapshot logic lives here. Mutating RPCs log one INFO
// line each with the snapshot key/name and the outcome; reads log at debug.
//
// The request field `snapshotter` (the proxy plugin's name in containerd's config) and the
// `containerd-namespace` metadata are ignored: keys arrive namespace-qualified already.
//
// Ownership: borrows the Snapshotter, which must outlive the service (and the server).
// Thread safety: handlers run concurrently on gRPC's threads; the Snapshotter is
// thread-safe and the service has no state of its own.
#pragma once

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "overlay/snapshotter.h"

namespace zsnap::plugin {

namespace snapshotsv1 = ::containerd::services::snapshots::v1;

class SnapshotsService final : public snapshotsv1::Snapshots::Service {
 public:
  // Infos per ListSnapshotsResponse message, as containerd's own servers send.
  static constexpr int kListBatchSize = 100;

  explicit SnapshotsService(overlay::Snapshotter& snapshotter) : snapshotter_(snapshotter) {}

  grpc::Status Prepare(grpc::ServerContext* context, const snapshotsv1::PrepareSnapshotRequest* req,
                       snapshotsv1::PrepareSnapshotResponse* resp) override;
  grpc::Status View(grpc::ServerContext* context, const snapshotsv1::ViewSnapshotRequest* req,
                    snapshotsv1::ViewSnapshotResponse* resp) override;
  grpc::Status Mounts(grpc::ServerContext* context, const snapshotsv1::MountsRequest* req,
                      snapshotsv1::MountsResponse* resp) override;
  grpc::Status Commit(grpc::ServerContext* context, const snapshotsv1::CommitSnapshotRequest* req,
                      google::protobuf::Empty* resp) override;
  grpc::Status Remove(grpc::ServerContext* context, const snapshotsv1::RemoveSnapshotRequest* req,
                      google::protobuf::Empty* resp) override;
  grpc::Status Stat(grpc::ServerContext* context, const snapshotsv1::StatSnapshotRequest* req,
                    snapshotsv1::StatSnapshotResponse* resp) override;
  grpc::Status Update(grpc::ServerContext* context, const snapshotsv1::UpdateSnapshotRequest* req,
                      snapshotsv1::UpdateSnapshotResponse* resp) override;
  grpc::Status List(grpc::ServerContext* context, const snapshotsv1::ListSnapshotsRequest* req,
                    grpc::ServerWriter<snapshotsv1::ListSnapshotsResponse>* writer) override;
  grpc::Status Usage(grpc::ServerContext* context, const snapshotsv1::UsageRequest* req,
                     snapshotsv1::UsageResponse* resp) override;
  grpc::Status Cleanup(grpc::ServerContext* context, const snapshotsv1::CleanupRequest* req,
                       google::protobuf::Empty* resp) override;

 private:
  overlay::Snapshotter& snapshotter_;
};

}  // namespace zsnap::plugin
