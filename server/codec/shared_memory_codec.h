// Tensors in same-host shared memory (runtime/shared_memory.h). A request
// tensor with a shared_memory carrier is read from its region into the
// bytes that become its storage (one copy), before the request's other
// codecs run, which then see a tensor with data; a ComputeRequest's
// output_placement writes result tensors from their storage into regions,
// and the reply carries dtype, shape and the reference instead of data.
#ifndef GRADSERVE_SERVER_CODEC_SHARED_MEMORY_CODEC_H_
#define GRADSERVE_SERVER_CODEC_SHARED_MEMORY_CODEC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/exec/tape.h"
#include "core/graph.h"
#include "gradserve/v1/gradient_service.pb.h"
#include "gradserve/v1/session.pb.h"
#include "runtime/calls.h"
#include "runtime/shared_memory.h"
#include "server/codec/tensor_codec.h"

namespace gradserve::server {

namespace pb = ::gradserve::v1;

runtime::SharedMemoryRef RefFromProto(const pb::SharedMemoryRef& ref);

// A reference checked against its region, and the tensor or output it is
// for ("feeds['x']").
struct NamedSpan {
  std::string what;
  runtime::SharedMemorySpan span;
};

// The shared-memory carriers of one request: each tensor checked (dtype,
// shape, byte_size against them, the reference against the caller's
// region) as it is added, then all read at once.
class SharedMemoryReads {
 public:
  SharedMemoryReads(runtime::SharedMemoryRegistry* registry,
                    const runtime::CallContext& ctx, const Limits& limits)
      : registry_(registry), ctx_(&ctx), limits_(&limits) {}

  absl::Status Add(TensorProtoMap* map, absl::string_view field);
  absl::Status Add(pb::Tensor* t, std::string what);

  bool empty() const { return pending_.empty(); }
  // What the tensors take once read.
  int64_t bytes() const { return bytes_; }
  // Reads each tensor's values into its data bytes and clears its carrier.
  absl::Status ReadAll();
  // The byte ranges read.
  const std::vector<NamedSpan>& spans() const { return spans_; }

 private:
  runtime::SharedMemoryRegistry* registry_;
  const runtime::CallContext* ctx_;
  const Limits* limits_;
  std::vector<pb::Tensor*> pending_;  // parallel to spans_
  std::vector<NamedSpan> spans_;
  int64_t bytes_ = 0;
};

// Adds every tensor of the request that a codec decodes (feeds, seeds,
// a graph's parameters and buffers, a session's values).
absl::Status AddSharedMemoryTensors(pb::ComputeRequest& r,
                                    SharedMemoryReads* reads);
absl::Status AddSharedMemoryTensors(pb::DescribeRequest& r,
                                    SharedMemoryReads* reads);
absl::Status AddSharedMemoryTensors(pb::ForwardRequest& r,
                                    SharedMemoryReads* reads);
absl::Status AddSharedMemoryTensors(pb::BackwardRequest& r,
                                    SharedMemoryReads* reads);
absl::Status AddSharedMemoryTensors(pb::CreateSessionRequest& r,
                                    SharedMemoryReads* reads);
absl::Status AddSharedMemoryTensors(pb::SetParametersRequest& r,
                                    SharedMemoryReads* reads);
absl::Status AddSharedMemoryTensors(pb::TrainStepRequest& r,
                                    SharedMemoryReads* reads);

// A ComputeRequest's output_placement.
class OutputPlacement {
 public:
  // Before computing: each reference against the caller's region, and no
  // two placements sharing a byte, nor a placement and a tensor `reads`
  // read (INVALID_ARGUMENT naming both).
  static absl::StatusOr<OutputPlacement> Check(
      const google::protobuf::Map<std::string, pb::SharedMemoryRef>& placement,
      const SharedMemoryReads& reads, runtime::SharedMemoryRegistry* registry,
      const runtime::CallContext& ctx);

  bool empty() const { return placed_.empty(); }
  // After computing: each placement names an output or a gradient of
  // `result` whose bytes it holds exactly; all are checked, then written.
  // The written tensors move from `result` into `refs` (dtype, shape and the
  // reference) for the reply.
  absl::Status Write(RunResult* result, pb::ComputeResponse* refs);

 private:
  struct Placed {
    std::string key;
    pb::SharedMemoryRef ref;
    NamedSpan span;
  };
  std::vector<Placed> placed_;
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_SHARED_MEMORY_CODEC_H_
