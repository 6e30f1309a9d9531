// ComputeStream: many Compute requests on one bidirectional stream. Each
// request is computed on the pool as soon as it arrives (up to a window of
// replies not yet sent), so with two or more workers item k+1 computes while
// item k is written; replies go out in request order. A bad request is
// answered in band and the stream goes on; cancelling the stream skips the
// work still queued.
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>

#include "core/status_macros.h"
#include "server/codec/wire_message.h"
#include "server/gradient_service.h"
#include "server/rpc.h"

namespace gradserve::server {
namespace {

class ComputeStreamReactor
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
      public DrainableStream {
 public:
  ComputeStreamReactor(GradientServiceImpl* service,
                       grpc::CallbackServerContext* context,
                       runtime::CallContext caller)
      : service_(service),
        ctx_(StreamContext(context, std::move(caller))),
        start_(std::chrono::steady_clock::now()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ReadNext();
    }
    service_->AddStream(this);
  }
  // Done, and no item of it computing: the stream has ended.
  ~ComputeStreamReactor() {
    service_->RemoveStream(this);
    service_->calls().Leave();
  }

  // The server drains: the items read so far are answered, later ones
  // refused in band, then the stream ends UNAVAILABLE (the client sends
  // what got no reply to another replica).
  void Drain() override {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    if (!done_) MaybeFinish();
  }

  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    reading_ = false;
    if (!ok) {
      reads_done_ = true;
      MaybeFinish();
      return;
    }
    const uint64_t index = next_index_++;
    bytes_in_ += static_cast<int64_t>(incoming_.Length());
    items_.push_back(Item{index});
    ++outstanding_;
    auto request = std::make_shared<grpc::ByteBuffer>(std::move(incoming_));
    absl::Status valid = draining_
                             ? CallGate::Refused()
                             : service_->compute_check().Check(
                                   *request, service_->runtime().limits());
    auto admitted = valid.ok()
                        ? service_->runtime().AdmitCall(ctx_, request->Length())
                        : valid;
    if (!valid.ok() && !draining_ &&
        service_->pacer().Hold(ctx_.connection,
                               [this, index, valid](absl::Duration waited) {
                                 AnswerHeld(index, valid, waited);
                               })) {
      // A lie, answered in band at its host's pace.
    } else if (!admitted.ok()) {
      Complete(index, admitted.status(), nullptr);
    } else {
      auto admission =
          std::make_shared<runtime::Admission>(*std::move(admitted));
      auto task = [this, index, request, admission] {
        Process(index, *request, admission.get());
      };
      if (!service_->runtime().pool()->Submit(runtime::SchedulingKey(ctx_),
                                              task)) {
        Complete(index,
                 absl::ResourceExhaustedError(
                     "the server's compute queue is full; retry later"),
                 nullptr);
      }
    }
    if (!draining_ && items_.size() < Window()) ReadNext();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {  // the client went away: nothing more can be sent
      broken_ = true;
      MaybeFinish();
      return;
    }
    bytes_out_ += static_cast<int64_t>(items_.front().reply.Length());
    items_.pop_front();
    if (!reads_done_ && !reading_ && !draining_ && items_.size() < Window()) {
      ReadNext();
    }
    MaybeWrite();
    MaybeFinish();
  }

  void OnCancel() override { cancelled_ = true; }

  void OnDone() override {
    std::unique_lock<std::mutex> lock(mu_);
    done_ = true;
    if (!finished_) Observe();  // cancelled before it could finish
    if (outstanding_ == 0) {
      lock.unlock();
      delete this;
    }
  }

 private:
  struct Item {
    uint64_t index;
    bool ready = false;
    grpc::ByteBuffer reply;
  };

  // The stream's items poll this between nodes. Not the call's context:
  // gRPC frees that after OnDone, and items still computing then (behind an
  // unsent reply when the client went away) would read freed memory.
  runtime::CallContext StreamContext(grpc::CallbackServerContext* context,
                                     runtime::CallContext ctx) {
    ctx.check_cancelled = [this, deadline = context->deadline()] {
      if (std::chrono::system_clock::now() > deadline) {
        return absl::DeadlineExceededError(
            "the call's deadline passed while computing");
      }
      if (cancelled_) return absl::CancelledError("the stream was cancelled");
      return absl::OkStatus();
    };
    return ctx;
  }

  // Under mu_, once per stream, as it finishes (or when it is done without
  // finishing): it counts as one call.
  void Observe() {
    CallObserver* observer = service_->options().observer;
    if (observer == nullptr) return;
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    observer->OnCall(
        {MethodIndex("ComputeStream"), ctx_.connection, ctx_.tenant,
         finished_ ? code_ : grpc::StatusCode::CANCELLED, bytes_in_, bytes_out_,
         std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count(),
         paced_refusals_, absl::ToInt64Nanoseconds(paced_)});
  }

  size_t Window() const {
    return static_cast<size_t>(std::max(1, service_->options().stream_window));
  }

  void ReadNext() {
    reading_ = true;
    StartRead(&incoming_);
  }

  // On the pool: one request, answered in band. Each request queued or
  // computing counts as one of the tenant's calls in flight.
  void Process(uint64_t index, const grpc::ByteBuffer& request,
               runtime::Admission* admission) {
    WireMessage response;
    absl::Status status =
        cancelled_ ? absl::CancelledError("the stream was cancelled")
                   : service_->ComputeFromBytes(ctx_, request, &response);
    *admission = runtime::Admission();  // given back before the reply
    std::unique_lock<std::mutex> lock(mu_);
    Complete(index, status, status.ok() ? &response : nullptr);
    const bool last = done_ && outstanding_ == 0;
    lock.unlock();
    if (last) delete this;
  }

  // On the pacer's thread: a refusal held back (OnReadDone).
  void AnswerHeld(uint64_t index, const absl::Status& status,
                  absl::Duration waited) {
    std::unique_lock<std::mutex> lock(mu_);
    ++paced_refusals_;
    paced_ += waited;
    Complete(index, status, nullptr);
    const bool last = done_ && outstanding_ == 0;
    lock.unlock();
    if (last) delete this;
  }

  // Under mu_: item `index` has its reply (or its error).
  void Complete(uint64_t index, const absl::Status& status,
                WireMessage* response) {
    pb::ComputeStreamResponse rest;
    rest.set_index(index);
    if (!status.ok()) {
      rest.set_code(static_cast<int>(status.code()));
      rest.set_error_message(std::string(status.message()));
    }
    WireMessage reply;
    reply.AddRest(rest);
    if (response != nullptr) {
      reply.AddMessage(pb::ComputeStreamResponse::kResponseFieldNumber,
                       std::move(*response));
    }
    Item& item = items_[index - items_.front().index];
    reply.Finish(&item.reply);
    item.ready = true;
    --outstanding_;
    MaybeWrite();
    MaybeFinish();
  }

  void MaybeWrite() {
    if (writing_ || broken_ || finished_ || items_.empty() ||
        !items_.front().ready) {
      return;
    }
    writing_ = true;
    StartWrite(&items_.front().reply);
  }

  void MaybeFinish() {
    if (finished_ || writing_) return;
    if (broken_) {
      finished_ = true;
      code_ = grpc::StatusCode::CANCELLED;
      cancelled_ = true;  // no reply can be sent: skip the work left
      Observe();
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "the client stopped reading the stream"));
      return;
    }
    if (items_.empty() && (reads_done_ || draining_)) {
      finished_ = true;
      const grpc::Status status =
          reads_done_ ? grpc::Status::OK : ToGrpcStatus(CallGate::Refused());
      code_ = status.error_code();
      Observe();  // before the status goes out, as for a unary call
      Finish(status);
    }
  }

  GradientServiceImpl* const service_;
  const runtime::CallContext ctx_;
  const std::chrono::steady_clock::time_point start_;
  int64_t bytes_in_ = 0, bytes_out_ = 0;  // messages read, replies written
  int64_t paced_refusals_ = 0;            // items held back, and how long
  absl::Duration paced_;
  grpc::StatusCode code_ = grpc::StatusCode::OK;  // as finished
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::deque<Item> items_;  // unanswered or unsent, in request order
  grpc::ByteBuffer incoming_;
  uint64_t next_index_ = 0;
  int outstanding_ = 0;  // items queued or computing
  bool reading_ = false, reads_done_ = false, writing_ = false;
  bool broken_ = false, finished_ = false, done_ = false;
  bool draining_ = false;
};

// A stream refused before it starts (a caller without a valid token, a
// server shutting down).
class RefusedStream
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Refuse(
    grpc::CallbackServerContext* context, CallObserver* observer,
    const absl::Status& status) {
  const grpc::Status refused = ToGrpcStatus(status);
  if (observer != nullptr) {
    observer->OnCall({MethodIndex("ComputeStream"), context->peer(), "",
                      refused.error_code()});
  }
  return new RefusedStream(refused);
}

}  // namespace

void GradientServiceImpl::AddStream(DrainableStream* stream) {
  std::unique_lock<std::mutex> lock(streams_mu_);
  streams_.insert(stream);
  if (!streams_draining_) return;
  lock.unlock();
  stream->Drain();
}

void GradientServiceImpl::RemoveStream(DrainableStream* stream) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_.erase(stream);
}

// Under streams_mu_: a stream being destroyed waits in RemoveStream, so
// each one told is whole (Drain does nothing once it is done).
void GradientServiceImpl::DrainStreams() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_draining_ = true;
  for (DrainableStream* stream : streams_) stream->Drain();
}

void GradientServiceImpl::AddComputeStream() {
  MarkMethodRawCallback(
      MethodIndex("ComputeStream"),
      new grpc::internal::CallbackBidiHandler<grpc::ByteBuffer,
                                              grpc::ByteBuffer>(
          [this](grpc::CallbackServerContext* context)
              -> grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* {
            auto caller = CallContextOf(context, options_.tokens.get());
            if (!caller.ok()) {
              return Refuse(context, options_.observer, caller.status());
            }
            if (!calls_.Enter()) {
              return Refuse(context, options_.observer, CallGate::Refused());
            }
            return new ComputeStreamReactor(this, context, *std::move(caller));
          }));
}

}  // namespace gradserve::server
