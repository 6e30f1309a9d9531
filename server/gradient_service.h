// gradserve.v1.GradientService on gRPC's callback API. Each RPC is one row:
// its request and reply types, where it runs (the compute pool, or the
// strand of the session it names), and a few lines that decode the request,
// call the runtime use case and encode the result. gRPC's threads only
// queue work and never block.
#ifndef GRADSERVE_SERVER_GRADIENT_SERVICE_H_
#define GRADSERVE_SERVER_GRADIENT_SERVICE_H_

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gradserve/v1/gradient_service.grpc.pb.h"
#include "runtime/runtime.h"
#include "server/call_gate.h"
#include "server/call_observer.h"
#include "server/codec/shared_memory_codec.h"
#include "server/codec/wire_check.h"
#include "server/codec/wire_message.h"
#include "server/refusal_pacer.h"
#include "server/security.h"

namespace gradserve::server {

namespace pb = ::gradserve::v1;

struct ServiceOptions {
  int64_t max_message_bytes = int64_t{1} << 30;
  // Replies that may wait to be sent on one ComputeStream.
  int stream_window = 8;
  // A Compute whose message is small and whose program is cached and plans
  // at most this many operations (and little memory) runs on gRPC's thread
  // instead of the compute pool: the hand-off and the thread wake-ups cost
  // more than such a program. 0 = every Compute runs on the pool.
  int64_t inline_compute_flops = int64_t{1} << 18;
  // The pace of refusals by the wire check, per host.
  PaceOptions refusal_pace;
  // Listed in GetServerInfo's features ("tls", "mutual_tls", "auth").
  bool tls = false;
  bool mutual_tls = false;
  bool metrics = false;  // listed as the feature "metrics"
  // Told of every finished call (metrics, access log); may be null.
  CallObserver* observer = nullptr;
  // With tokens on, each call's tenant (server/security.h).
  std::shared_ptr<const TokenTable> tokens;
};

// A ComputeStream as the drain sees it: told to end once its items read
// so far are answered.
class DrainableStream {
 public:
  virtual void Drain() = 0;

 protected:
  ~DrainableStream() = default;
};

class UnaryEnd;  // gradient_service.cc

class GradientServiceImpl final : public pb::GradientService::Service {
 public:
  GradientServiceImpl(runtime::Runtime* runtime, const ServiceOptions& options);

  runtime::Runtime& runtime() { return *runtime_; }
  const ServiceOptions& options() const { return options_; }
  // Every call passes it (the server's drain closes it; call_gate.h).
  CallGate& calls() { return calls_; }
  // Open streams, told to end when the drain begins (DrainStreams); a
  // stream that opens after that is drained at once.
  void AddStream(DrainableStream* stream);
  void RemoveStream(DrainableStream* stream);
  void DrainStreams();
  // ComputeRequest's tensors checked on the wire (ComputeStream's items),
  // and the pace of the check's refusals.
  const WireCheck& compute_check() const { return compute_check_; }
  RefusalPacer& pacer() { return pacer_; }

  // One Compute: the unary RPC's work, and each item of ComputeStream's.
  absl::Status ComputeOne(const runtime::CallContext& ctx,
                          pb::ComputeRequest& request, WireMessage* response);
  absl::Status ComputeFromBytes(const runtime::CallContext& ctx,
                                const grpc::ByteBuffer& request,
                                WireMessage* response);

 private:
  enum class Where { kPool, kSessionStrand, kHere };
  // Decodes the request (taking its tensors' bytes), runs the use case, and
  // writes the reply: tensors into the WireMessage, the rest into Reply.
  template <typename Request, typename Reply>
  using Handler = std::function<absl::Status(const runtime::CallContext&,
                                             Request&, Reply*, WireMessage*)>;

  template <typename Request, typename Reply>
  void AddUnary(absl::string_view method, Where where,
                Handler<Request, Reply> handler);
  // Runs `task` where `where` says; false when the queue there is full.
  bool Schedule(Where where, const runtime::CallContext& ctx,
                const grpc::ByteBuffer& request, std::function<void()> task);
  // A unary call admitted to run: how it ends, who asked, and what it holds
  // until its reply.
  struct Admitted {
    std::shared_ptr<const UnaryEnd> end;
    runtime::CallContext ctx;
    std::shared_ptr<runtime::Admission> admission;
  };
  using RawStart = std::function<void(
      grpc::CallbackServerContext*, grpc::ServerUnaryReactor*,
      const grpc::ByteBuffer*, grpc::ByteBuffer*)>;
  // Serves `method` with `start`, on gRPC's thread (it queues the work).
  void AddRawUnary(int method, RawStart start);
  // The caller and its admission; the call ended already when refused.
  // Passes the drain's gate, then the wire check of the request's tensors.
  std::optional<Admitted> Admit(int method, const WireCheck& check,
                                grpc::CallbackServerContext* context,
                                grpc::ServerUnaryReactor* reactor,
                                const grpc::ByteBuffer& request);
  // Runs `work`, which writes the reply, and ends the call with its status.
  static void Answer(const Admitted& call, grpc::ByteBuffer* response,
                     const std::function<absl::Status(WireMessage*)>& work);
  // Schedule, ending the call when the queue is full.
  void Dispatch(Where where, const Admitted& call,
                const grpc::ByteBuffer& request, std::function<void()> task);

  // Compute: a message up to kPlannedHereBytes is parsed and planned on
  // gRPC's thread, and run there when RunsHere; the rest on the pool.
  using ComputePlan = runtime::Runtime::ComputePlan;
  static constexpr size_t kPlannedHereBytes = 64 << 10;
  static constexpr int64_t kRunHereBytes = int64_t{1} << 20;
  void StartCompute(const Admitted& call, const grpc::ByteBuffer& request,
                    grpc::ByteBuffer* response);
  // The plan of a request; none for shared memory or an ONNX model (the
  // pool does all of those).
  absl::StatusOr<std::optional<ComputePlan>> PlanHere(
      const runtime::CallContext& ctx, pb::ComputeRequest& request);
  bool RunsHere(const ComputePlan& plan) const;
  absl::Status RunPlanned(const runtime::CallContext& ctx, ComputePlan plan,
                          WireMessage* response);
  void AddComputeRpcs();
  void AddAnalysisRpcs();
  void AddSessionRpcs();
  void AddInfoRpcs();
  void AddSharedMemoryRpcs();
  void AddComputeStream();  // server/stream.cc
  // The request's tensors carried in shared memory, read into its data
  // bytes, which the memory budget holds until this is destroyed.
  struct SharedMemoryInputs {
    SharedMemoryReads reads;
    runtime::MemoryBudget::Reservation held;
  };
  template <typename Request>
  absl::StatusOr<SharedMemoryInputs> ReadSharedMemory(
      const runtime::CallContext& ctx, Request& request);
  pb::GetServerInfoResponse ServerInfo() const;
  void TenantQuotaToProto(const std::string& tenant,
                          pb::TenantQuota* out) const;

  runtime::Runtime* const runtime_;
  const ServiceOptions options_;
  pb::GetServerInfoResponse static_info_;
  CallGate calls_;
  std::mutex streams_mu_;
  std::set<DrainableStream*> streams_;
  bool streams_draining_ = false;
  const WireCheck compute_check_{*pb::ComputeRequest::descriptor()};
  // Paces the wire check's refusals (Admit).
  RefusalPacer pacer_{options_.refusal_pace};
};

// The index of a GradientService method, for gRPC's handler table.
int MethodIndex(absl::string_view method);
// The methods' count, and the name of the one at `index` ("" when none).
int MethodCount();
const std::string& MethodName(int index);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_GRADIENT_SERVICE_H_
