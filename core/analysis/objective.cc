#include "core/analysis/objective.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/compile/program_cache.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

double Dot(const Tensor& a, const Tensor& b) {
  double sum = 0;
  const double* x = a.data<double>();
  const double* y = b.data<double>();
  for (int64_t i = 0; i < a.num_elements(); ++i) sum += x[i] * y[i];
  return sum;
}

// The values J is read from: the loss and the seeded values.
std::vector<std::string> ObjectiveFetch(const ComputeArgs& args) {
  std::vector<std::string> fetch;
  if (!args.loss.empty()) fetch.push_back(args.loss);
  for (const auto& [name, seed] : args.output_gradients) fetch.push_back(name);
  return fetch;
}

absl::Status CheckSeeds(const Program& program, const TensorMap& seeds) {
  for (const auto& [name, seed] : seeds) {
    const TensorMeta& meta = program.meta(program.ValueId(name));
    if (seed.shape() != meta.shape || !IsFloating(seed.dtype())) {
      return absl::InvalidArgumentError(
          absl::StrCat("output_gradients['", name, "'] must be float32 ",
                       ShapeToString(meta.shape), " like '", name, "', got ",
                       seed.meta().ToString()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

ProgramSource IndexPrograms(std::shared_ptr<const GraphIndex> index,
                            const Limits& limits) {
  auto cache =
      std::make_shared<ProgramCache>(std::numeric_limits<int64_t>::max() / 2);
  return [index = std::move(index), cache, limits](const ProgramRequest& r) {
    return cache->GetOrCompile(
        index->key(), r, [&index] { return index; }, limits);
  };
}

absl::StatusOr<Objective> Objective::Make(
    ProgramSource programs, std::shared_ptr<const ValueSet> values,
    ComputeArgs args) {
  if (args.loss.empty() && args.output_gradients.empty()) {
    return absl::InvalidArgumentError(
        "nothing to differentiate: name a loss (or give output_gradients)");
  }
  Objective o;
  o.programs_ = std::move(programs);
  o.values_ = std::move(values);
  args.fetch = ObjectiveFetch(args);
  args.float_dtype = DType::kFloat64;
  o.args_ = std::move(args);
  ASSIGN_OR_RETURN(o.gradient_, o.programs_(ProgramRequestFor(o.args_)));
  RETURN_IF_ERROR(CheckSeeds(*o.gradient_, o.args_.output_gradients));
  RETURN_IF_ERROR(o.ResolveWrt(*o.gradient_, *o.values_));
  o.value_request_ = ProgramRequestFor(o.args_);
  o.value_request_.loss.clear();
  o.value_request_.seeded.clear();
  o.value_request_.wrt.clear();
  o.float32_request_ = ProgramRequestFor(o.args_);
  o.float32_request_.float_dtype = DType::kFloat32;
  for (const auto& [name, seed] : o.args_.output_gradients) {
    o.seeds_[name] = seed.CastFloat(DType::kFloat64);
  }
  o.run_bytes_ =
      o.gradient_->peak_bytes_bound() + o.gradient_->result_bytes_bound();
  return o;
}

absl::StatusOr<Objective> Objective::Make(const GraphDef& graph,
                                          ComputeArgs args,
                                          const Limits& limits) {
  ASSIGN_OR_RETURN(auto index, GraphIndex::Build(graph, limits));
  return Make(IndexPrograms(std::move(index), limits),
              std::make_shared<ValueSet>(ValuesOf(graph)), std::move(args));
}

absl::Status Objective::ResolveWrt(const Program& program,
                                   const ValueSet& values) {
  for (int id : program.wrt()) {
    const std::string& name = program.name(id);
    if (std::find(wrt_.begin(), wrt_.end(), name) != wrt_.end()) continue;
    if (program.kind(id) == ValueKind::kNodeOutput) {
      return absl::InvalidArgumentError(absl::StrCat(
          "wrt '", name,
          "' is computed by a node; finite differences and Hessians perturb "
          "values, so wrt must name graph inputs, parameters or buffers"));
    }
    const Tensor* value = values.Find(name);
    if (auto it = args_.feeds.find(name); it != args_.feeds.end()) {
      value = &it->second;
    }
    if (value == nullptr) {
      return absl::InternalError(
          absl::StrCat("wrt '", name, "' was compiled without a value"));
    }
    const Tensor x = value->CastFloat(DType::kFloat64);
    wrt_.push_back(name);
    shapes_.push_back(x.shape());
    point_.insert(point_.end(), x.values<double>().begin(),
                  x.values<double>().end());
    offsets_.push_back(static_cast<int64_t>(point_.size()));
  }
  return absl::OkStatus();
}

TensorMap Objective::FeedsAt(absl::Span<const double> theta) const {
  TensorMap feeds = args_.feeds;
  for (size_t i = 0; i < wrt_.size(); ++i) {
    feeds[wrt_[i]] = Tensor::FromValues<double>(
        shapes_[i], theta.subspan(offsets_[i], offsets_[i + 1] - offsets_[i]));
  }
  return feeds;
}

double Objective::Evaluate(const std::map<std::string, Tensor>& outputs) const {
  double j = 0;
  if (!args_.loss.empty()) {
    j += outputs.at(args_.loss).CastFloat(DType::kFloat64).data<double>()[0];
  }
  for (const auto& [name, seed] : seeds_) {
    j += Dot(seed, outputs.at(name).CastFloat(DType::kFloat64));
  }
  return j;
}

absl::StatusOr<double> Objective::Value(absl::Span<const double> theta) const {
  ASSIGN_OR_RETURN(auto program, programs_(value_request_));
  ForwardResult r;
  const RunControl control{args_.seed, args_.check_cancelled};
  RETURN_IF_ERROR(
      Tape::Forward(program, FeedsAt(theta), *values_, control, &r).status());
  return Evaluate(r.outputs);
}

absl::StatusOr<double> Objective::Gradient(absl::Span<const double> theta,
                                           absl::Span<double> gradient) const {
  const RunControl control{args_.seed, args_.check_cancelled};
  ASSIGN_OR_RETURN(RunResult r, Run(gradient_, FeedsAt(theta), *values_,
                                    args_.output_gradients, control));
  for (size_t i = 0; i < wrt_.size(); ++i) {
    absl::Span<const double> g = r.gradients.at(wrt_[i]).values<double>();
    std::copy(g.begin(), g.end(), gradient.begin() + offsets_[i]);
  }
  return Evaluate(r.outputs);
}

absl::StatusOr<std::vector<double>> Objective::Float32Gradient() const {
  ASSIGN_OR_RETURN(auto program, programs_(float32_request_));
  const RunControl control{args_.seed, args_.check_cancelled};
  ASSIGN_OR_RETURN(RunResult r, Run(program, args_.feeds, *values_,
                                    args_.output_gradients, control));
  std::vector<double> flat;
  flat.reserve(point_.size());
  for (const std::string& name : wrt_) {
    const Tensor g = r.gradients.at(name).CastFloat(DType::kFloat64);
    flat.insert(flat.end(), g.values<double>().begin(),
                g.values<double>().end());
  }
  return flat;
}

std::map<std::string, Tensor> Objective::Unflatten(
    absl::Span<const double> flat, DType dtype) const {
  std::map<std::string, Tensor> tensors;
  for (size_t i = 0; i < wrt_.size(); ++i) {
    tensors[wrt_[i]] =
        Tensor::FromValues<double>(
            shapes_[i],
            flat.subspan(offsets_[i], offsets_[i + 1] - offsets_[i]))
            .CastFloat(dtype);
  }
  return tensors;
}

absl::StatusOr<std::vector<double>> Objective::Flatten(
    const TensorMap& tensors, absl::string_view field) const {
  for (const auto& [name, t] : tensors) {
    if (std::find(wrt_.begin(), wrt_.end(), name) == wrt_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "['", name, "']: '", name, "' is not among wrt [",
                       absl::StrJoin(wrt_, ", "), "]"));
    }
  }
  std::vector<double> flat;
  flat.reserve(point_.size());
  for (size_t i = 0; i < wrt_.size(); ++i) {
    auto it = tensors.find(wrt_[i]);
    if (it == tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " has no tensor for wrt '", wrt_[i], "' (one per wrt value)"));
    }
    if (it->second.shape() != shapes_[i] || !IsFloating(it->second.dtype())) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "['", wrt_[i], "'] must be float32 ",
                       ShapeToString(shapes_[i]), " like wrt '", wrt_[i],
                       "', got ", it->second.meta().ToString()));
    }
    const Tensor x = it->second.CastFloat(DType::kFloat64);
    flat.insert(flat.end(), x.values<double>().begin(),
                x.values<double>().end());
  }
  return flat;
}

}  // namespace gradserve
