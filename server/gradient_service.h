// gradserve.v1.GradientService on gRPC's callback API. Each RPC is converted,
// validated and computed on the compute pool; gRPC's threads only queue the
// work and never block.
#ifndef GRADSERVE_SERVER_GRADIENT_SERVICE_H_
#define GRADSERVE_SERVER_GRADIENT_SERVICE_H_

#include <functional>

#include "absl/status/status.h"
#include "core/graph.h"
#include "gradserve/v1/gradient_service.grpc.pb.h"
#include "server/compute_pool.h"

namespace gradserve::server {

class GradientServiceImpl final
    : public ::gradserve::v1::GradientService::CallbackService {
 public:
  GradientServiceImpl(ComputePool* pool, const Limits& limits,
                      int64_t max_message_bytes);

  grpc::ServerUnaryReactor* Compute(
      grpc::CallbackServerContext* context,
      const ::gradserve::v1::ComputeRequest* request,
      ::gradserve::v1::ComputeResponse* response) override;
  grpc::ServerUnaryReactor* Describe(
      grpc::CallbackServerContext* context,
      const ::gradserve::v1::DescribeRequest* request,
      ::gradserve::v1::DescribeResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(
      grpc::CallbackServerContext* context,
      const ::gradserve::v1::GetServerInfoRequest* request,
      ::gradserve::v1::GetServerInfoResponse* response) override;

 private:
  // Runs `work` on the pool and finishes the call with its status.
  grpc::ServerUnaryReactor* RunOnPool(grpc::CallbackServerContext* context,
                                      std::function<absl::Status()> work);

  ComputePool* pool_;
  const Limits limits_;
  ::gradserve::v1::GetServerInfoResponse info_;
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_GRADIENT_SERVICE_H_
