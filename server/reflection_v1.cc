#include "server/reflection_v1.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "gradserve/v1/gradient_service.pb.h"
#include "grpc/health/v1/health.pb.h"

namespace gradserve::server {
namespace {

using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

void Error(grpc::StatusCode code, const std::string& message,
           ReflectionV1::Response* response) {
  response->mutable_error_response()->set_error_code(code);
  response->mutable_error_response()->set_error_message(message);
}

// `file`, then the files it imports (transitively), less those in `sent`.
void AddFiles(const FileDescriptor* file, std::set<std::string>* sent,
              ReflectionV1::Response* response) {
  if (!sent->insert(file->name()).second) return;
  google::protobuf::FileDescriptorProto proto;
  file->CopyTo(&proto);
  proto.SerializeToString(response->mutable_file_descriptor_response()
                              ->add_file_descriptor_proto());
  for (int i = 0; i < file->dependency_count(); ++i) {
    AddFiles(file->dependency(i), sent, response);
  }
}

}  // namespace

std::vector<std::string> ServedServices() {
  return {gradserve::v1::ComputeRequest::descriptor()
              ->file()
              ->FindServiceByName("GradientService")
              ->full_name(),
          grpc::health::v1::HealthCheckRequest::descriptor()
              ->file()
              ->service(0)
              ->full_name(),
          "grpc.reflection.v1alpha.ServerReflection",
          grpc::reflection::v1::ServerReflectionRequest::descriptor()
              ->file()
              ->service(0)
              ->full_name()};
}

grpc::Status ReflectionV1::ServerReflectionInfo(
    grpc::ServerContext*, grpc::ServerReaderWriter<Response, Request>* stream) {
  std::set<std::string> sent;
  Request request;
  while (stream->Read(&request)) {
    Response response;
    Answer(request, &response, &sent);
    if (!stream->Write(response)) break;
  }
  return grpc::Status::OK;
}

void ReflectionV1::Answer(const Request& request, Response* response,
                          std::set<std::string>* sent) const {
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  response->set_valid_host(request.host());
  *response->mutable_original_request() = request;
  const FileDescriptor* file = nullptr;
  std::string missing;
  switch (request.message_request_case()) {
    case Request::kListServices:
      for (const std::string& name : services_) {
        response->mutable_list_services_response()->add_service()->set_name(
            name);
      }
      return;
    case Request::kFileByFilename:
      file = pool->FindFileByName(request.file_by_filename());
      missing = absl::StrCat("no file '", request.file_by_filename(), "'");
      break;
    case Request::kFileContainingSymbol:
      file = pool->FindFileContainingSymbol(request.file_containing_symbol());
      missing =
          absl::StrCat("no symbol '", request.file_containing_symbol(), "'");
      break;
    case Request::kFileContainingExtension: {
      const auto& ext = request.file_containing_extension();
      const auto* type = pool->FindMessageTypeByName(ext.containing_type());
      const auto* field = type == nullptr ? nullptr
                                          : pool->FindExtensionByNumber(
                                                type, ext.extension_number());
      if (field != nullptr) file = field->file();
      missing = absl::StrCat("no extension ", ext.extension_number(), " of '",
                             ext.containing_type(), "'");
      break;
    }
    case Request::kAllExtensionNumbersOfType: {
      const std::string& name = request.all_extension_numbers_of_type();
      const auto* type = pool->FindMessageTypeByName(name);
      if (type == nullptr) {
        Error(grpc::StatusCode::NOT_FOUND,
              absl::StrCat("no message type '", name, "'"), response);
        return;
      }
      std::vector<const google::protobuf::FieldDescriptor*> extensions;
      pool->FindAllExtensions(type, &extensions);
      auto* numbers = response->mutable_all_extension_numbers_response();
      numbers->set_base_type_name(name);
      for (const auto* field : extensions) {
        numbers->add_extension_number(field->number());
      }
      return;
    }
    default:
      Error(grpc::StatusCode::UNIMPLEMENTED,
            "the request names none of the known message_request fields",
            response);
      return;
  }
  if (file == nullptr) {
    Error(grpc::StatusCode::NOT_FOUND, missing, response);
    return;
  }
  AddFiles(file, sent, response);
}

}  // namespace gradserve::server
