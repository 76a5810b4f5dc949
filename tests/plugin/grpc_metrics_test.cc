#include "plugin/grpc_metrics.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "plugin/server.h"
#include "plugin/snapshots_service.h"
#include "tests/plugin/pull_fixtures.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

namespace v1 = ::containerd::services::snapshots::v1;
using testing::Sample;

// Every RPC answers UNIMPLEMENTED, except Stat, which answers NOT_FOUND.
class FakeService final : public v1::Snapshots::Service {
 public:
  grpc::Status Stat(grpc::ServerContext*, const v1::StatSnapshotRequest*,
                    v1::StatSnapshotResponse*) override {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such snapshot");
  }
};

TEST(GrpcMetricsTest, EveryRequestIsTimedByMethodAndCode) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("zsnap.sock");
  Metrics metrics(BuildInfo{});
  FakeService service;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(metrics));
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(socket, service, std::move(factories));
  ASSERT_TRUE(server.ok()) << server.status();

  auto stub = v1::Snapshots::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    v1::StatSnapshotRequest req;
    v1::StatSnapshotResponse resp;
    EXPECT_EQ(stub->Stat(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::CleanupRequest req;
    google::protobuf::Empty resp;
    EXPECT_EQ(stub->Cleanup(&ctx, req, &resp).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  (*server)->Shutdown(absl::Seconds(1));
  (*server)->Wait();

  const std::string text = metrics.Expose();
  const std::string base = "zsnap_grpc_request_duration_seconds";
  EXPECT_EQ(Sample(text, base + R"(_count{code="NOT_FOUND",method="Stat"})"), 3);
  EXPECT_EQ(Sample(text, base + R"(_count{code="UNIMPLEMENTED",method="Cleanup"})"), 1);
  const double sum = Sample(text, base + R"(_sum{code="NOT_FOUND",method="Stat"})");
  EXPECT_GT(sum, 0);
  EXPECT_LT(sum, 3);
}

}  // namespace
}  // namespace zsnap::plugin
