// grpc.reflection.v1.ServerReflection over the process's generated
// descriptors: what Debian's gRPC 1.51 serves as v1alpha (its reflection
// plugin, which gradserve also installs), under the stable name that newer
// clients (grpcurl, Postman, grpc-java) ask for first. Written here because
// that gRPC has no v1; the messages are the same on the wire.
#ifndef GRADSERVE_SERVER_REFLECTION_V1_H_
#define GRADSERVE_SERVER_REFLECTION_V1_H_

#include <set>
#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace gradserve::server {

// The full names of the services a gradserve server serves: its own,
// health, and reflection v1alpha and v1. Naming them links the descriptors
// of each (health's would otherwise be left out of the binary, so that
// reflection listed it but could not describe it).
std::vector<std::string> ServedServices();

class ReflectionV1 final
    : public grpc::reflection::v1::ServerReflection::Service {
 public:
  using Request = grpc::reflection::v1::ServerReflectionRequest;
  using Response = grpc::reflection::v1::ServerReflectionResponse;

  explicit ReflectionV1(std::vector<std::string> services)
      : services_(std::move(services)) {}

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<Response, Request>* stream) override;

  // One request's answer; `sent` holds the files this stream has sent
  // (each goes once, as the protocol allows).
  void Answer(const Request& request, Response* response,
              std::set<std::string>* sent) const;

 private:
  const std::vector<std::string> services_;
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_REFLECTION_V1_H_
