#include "server/codec/shared_memory_codec.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace gradserve::server {
namespace {

template <typename Request>
absl::Status AddGraph(Request& r, SharedMemoryReads* reads) {
  if (!r.has_graph()) return absl::OkStatus();
  pb::Graph* g = r.mutable_graph();
  RETURN_IF_ERROR(reads->Add(g->mutable_parameters(), "graph.parameters"));
  return reads->Add(g->mutable_buffers(), "graph.buffers");
}

absl::Status OverlapError(const NamedSpan& a, const NamedSpan& b) {
  return absl::InvalidArgumentError(absl::StrCat(
      a.what, " and ", b.what, " overlap in shared memory (regions '",
      a.span.region(), "' and '", b.span.region(),
      "'); an output must not share bytes with another output or an input "
      "of the request"));
}

std::string Names(const std::map<std::string, Tensor>& tensors) {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors) names.push_back(name);
  return absl::StrCat("[", absl::StrJoin(names, ", "), "]");
}

}  // namespace

runtime::SharedMemoryRef RefFromProto(const pb::SharedMemoryRef& ref) {
  return {ref.region(), ref.offset(), ref.byte_size()};
}

absl::Status SharedMemoryReads::Add(TensorProtoMap* map,
                                    absl::string_view field) {
  for (auto& [name, t] : *map) {
    if (t.has_shared_memory()) RETURN_IF_ERROR(Add(&t, Keyed(field, name)));
  }
  return absl::OkStatus();
}

absl::Status SharedMemoryReads::Add(pb::Tensor* t, std::string what) {
  RETURN_IF_ERROR(registry_->CheckEnabled(what));
  RETURN_IF_ERROR(CheckTensor(*t, what, *limits_).status());
  ASSIGN_OR_RETURN(
      runtime::SharedMemorySpan span,
      registry_->Find(*ctx_, RefFromProto(t->shared_memory()), what));
  const uint64_t size = span.size();
  bytes_ =
      size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() - bytes_)
          ? std::numeric_limits<int64_t>::max()
          : bytes_ + static_cast<int64_t>(size);
  if (bytes_ > limits_->max_request_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the request's tensors in shared memory take ", bytes_, " bytes (",
        what, " passes it), over the limit of ", limits_->max_request_bytes));
  }
  pending_.push_back(t);
  spans_.push_back({std::move(what), std::move(span)});
  return absl::OkStatus();
}

absl::Status SharedMemoryReads::ReadAll() {
  for (size_t i = 0; i < pending_.size(); ++i) {
    const NamedSpan& s = spans_[i];
    std::string* data = pending_[i]->mutable_data();
    data->resize(s.span.size());
    RETURN_IF_ERROR(s.span.Read(data->data(), s.what));
    pending_[i]->clear_shared_memory();
  }
  pending_.clear();
  return absl::OkStatus();
}

absl::Status AddSharedMemoryTensors(pb::ComputeRequest& r,
                                    SharedMemoryReads* reads) {
  RETURN_IF_ERROR(AddGraph(r, reads));
  RETURN_IF_ERROR(reads->Add(r.mutable_feeds(), "feeds"));
  return reads->Add(r.mutable_output_gradients(), "output_gradients");
}

absl::Status AddSharedMemoryTensors(pb::DescribeRequest& r,
                                    SharedMemoryReads* reads) {
  return AddGraph(r, reads);
}

absl::Status AddSharedMemoryTensors(pb::ForwardRequest& r,
                                    SharedMemoryReads* reads) {
  RETURN_IF_ERROR(AddGraph(r, reads));
  return reads->Add(r.mutable_feeds(), "feeds");
}

absl::Status AddSharedMemoryTensors(pb::BackwardRequest& r,
                                    SharedMemoryReads* reads) {
  return reads->Add(r.mutable_output_gradients(), "output_gradients");
}

absl::Status AddSharedMemoryTensors(pb::CreateSessionRequest& r,
                                    SharedMemoryReads* reads) {
  return AddGraph(r, reads);
}

absl::Status AddSharedMemoryTensors(pb::SetParametersRequest& r,
                                    SharedMemoryReads* reads) {
  RETURN_IF_ERROR(reads->Add(r.mutable_parameters(), "parameters"));
  RETURN_IF_ERROR(reads->Add(r.mutable_buffers(), "buffers"));
  return reads->Add(r.mutable_optimizer_state(), "optimizer_state");
}

absl::Status AddSharedMemoryTensors(pb::TrainStepRequest& r,
                                    SharedMemoryReads* reads) {
  return reads->Add(r.mutable_feeds(), "feeds");
}

absl::StatusOr<OutputPlacement> OutputPlacement::Check(
    const google::protobuf::Map<std::string, pb::SharedMemoryRef>& placement,
    const SharedMemoryReads& reads, runtime::SharedMemoryRegistry* registry,
    const runtime::CallContext& ctx) {
  OutputPlacement out;
  for (const auto& [key, ref] : placement) {
    std::string what = Keyed("output_placement", key);
    ASSIGN_OR_RETURN(runtime::SharedMemorySpan span,
                     registry->Find(ctx, RefFromProto(ref), what));
    out.placed_.push_back({key, ref, {std::move(what), std::move(span)}});
  }
  // Sorted, so that messages do not depend on the map's order.
  std::sort(out.placed_.begin(), out.placed_.end(),
            [](const Placed& a, const Placed& b) { return a.key < b.key; });
  for (size_t i = 0; i < out.placed_.size(); ++i) {
    const NamedSpan& a = out.placed_[i].span;
    for (size_t j = i + 1; j < out.placed_.size(); ++j) {
      if (a.span.Overlaps(out.placed_[j].span.span)) {
        return OverlapError(a, out.placed_[j].span);
      }
    }
    for (const NamedSpan& input : reads.spans()) {
      if (a.span.Overlaps(input.span)) return OverlapError(a, input);
    }
  }
  return out;
}

absl::Status OutputPlacement::Write(RunResult* result,
                                    pb::ComputeResponse* refs) {
  struct Target {
    std::map<std::string, Tensor>* from;
    TensorProtoMap* to;
    Tensor wire;  // plain float32 or int64, as a reply's data would be
  };
  std::vector<Target> targets;
  for (const Placed& p : placed_) {
    const bool output = result->outputs.count(p.key) > 0;
    const bool gradient = result->gradients.count(p.key) > 0;
    if (output == gradient) {
      return absl::InvalidArgumentError(absl::StrCat(
          p.span.what, ": '", p.key,
          output ? "' is both a fetched output and a gradient; place one of "
                   "them by fetching it under another name"
                 : absl::StrCat("' is neither an output nor a gradient of the "
                                "reply (outputs ",
                                Names(result->outputs), ", gradients ",
                                Names(result->gradients), ")")));
    }
    Target t{output ? &result->outputs : &result->gradients,
             output ? refs->mutable_outputs() : refs->mutable_gradients(),
             {}};
    t.wire = t.from->at(p.key).CastFloat(DType::kFloat32);
    if (t.wire.num_bytes() != p.span.span.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          p.span.what, ": byte_size is ", p.span.span.size(), ", but ",
          output ? "output '" : "the gradient of '", p.key, "' (",
          t.wire.meta().ToString(), ") takes ", t.wire.num_bytes(), " bytes"));
    }
    targets.push_back(std::move(t));
  }
  for (size_t i = 0; i < placed_.size(); ++i) {
    const Placed& p = placed_[i];
    Target& t = targets[i];
    RETURN_IF_ERROR(p.span.span.Write(t.wire.raw_data(), p.span.what));
    pb::Tensor& reply = (*t.to)[p.key];
    reply.set_dtype(t.wire.dtype() == DType::kInt64 ? pb::DATA_TYPE_INT64
                                                    : pb::DATA_TYPE_FLOAT32);
    reply.mutable_shape()->Assign(t.wire.shape().begin(), t.wire.shape().end());
    *reply.mutable_shared_memory() = p.ref;
    t.from->erase(p.key);
  }
  return absl::OkStatus();
}

}  // namespace gradserve::server
