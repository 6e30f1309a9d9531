// The function the analyses study: J = loss + sum over seeds of <seed, v>, as
// a function of the `wrt` values (graph inputs, parameters or buffers), with
// everything else held where the request puts it: the feeds, the other
// values, the mode and the seed (so dropout draws the same masks at every
// point). J and its gradient are evaluated on the float64 reference path,
// through programs from a ProgramSource: the runtime's program cache, or a
// cache of the caller's own. A point is all wrt values as one flat vector,
// in wrt order.
#ifndef GRADSERVE_CORE_ANALYSIS_OBJECTIVE_H_
#define GRADSERVE_CORE_ANALYSIS_OBJECTIVE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/compile/program.h"
#include "core/compute.h"
#include "core/exec/tape.h"

namespace gradserve {

using ProgramSource =
    std::function<absl::StatusOr<std::shared_ptr<const Program>>(
        const ProgramRequest&)>;

// Programs of one graph's index, compiled once per request kind: for
// one-shot use over a GraphDef, as core's Compute is.
ProgramSource IndexPrograms(std::shared_ptr<const GraphIndex> index,
                            const Limits& limits);

class Objective {
 public:
  // `args` as Compute takes them: feeds, loss and/or output_gradients, wrt
  // (empty = all parameters), mode, seed, check_cancelled; fetch and
  // float_dtype are the objective's own.
  static absl::StatusOr<Objective> Make(ProgramSource programs,
                                        std::shared_ptr<const ValueSet> values,
                                        ComputeArgs args);
  // Over a graph with its values, compiling with a cache of its own.
  static absl::StatusOr<Objective> Make(const GraphDef& graph, ComputeArgs args,
                                        const Limits& limits);

  // The wrt values, deduplicated, in the order gradients come.
  const std::vector<std::string>& wrt() const { return wrt_; }
  const std::vector<Shape>& shapes() const { return shapes_; }
  // Where each wrt value starts in a point; the last entry is dimension().
  const std::vector<int64_t>& offsets() const { return offsets_; }
  int64_t dimension() const { return offsets_.back(); }
  // The request's point: the wrt values as given.
  const std::vector<double>& point() const { return point_; }
  const ComputeArgs& args() const { return args_; }
  // The most bytes one evaluation allocates, with its results.
  int64_t run_bytes() const { return run_bytes_; }

  // J at `theta`, float64, forward only.
  absl::StatusOr<double> Value(absl::Span<const double> theta) const;
  // J at `theta` and its gradient into `gradient`, float64.
  absl::StatusOr<double> Gradient(absl::Span<const double> theta,
                                  absl::Span<double> gradient) const;
  // The float32 (oneDNN) path's gradients at the request's point, flat.
  absl::StatusOr<std::vector<double>> Float32Gradient() const;

  // A point's wrt values as tensors of `dtype`, by name.
  std::map<std::string, Tensor> Unflatten(absl::Span<const double> flat,
                                          DType dtype) const;
  // Tensors named by wrt (one each, of its shape) as a point; errors name
  // `field` and the tensor.
  absl::StatusOr<std::vector<double>> Flatten(const TensorMap& tensors,
                                              absl::string_view field) const;

 private:
  Objective() = default;
  absl::Status ResolveWrt(const Program& program, const ValueSet& values);
  TensorMap FeedsAt(absl::Span<const double> theta) const;
  // J from a run's outputs.
  double Evaluate(const std::map<std::string, Tensor>& outputs) const;

  ComputeArgs args_;
  ProgramSource programs_;
  std::shared_ptr<const ValueSet> values_;
  std::shared_ptr<const Program> gradient_;  // float64, forward and backward
  ProgramRequest value_request_;             // float64, forward only
  ProgramRequest float32_request_;           // as Compute runs the request
  TensorMap seeds_;                          // float64
  std::vector<std::string> wrt_;
  std::vector<Shape> shapes_;
  std::vector<int64_t> offsets_ = {0};
  std::vector<double> point_;
  int64_t run_bytes_ = 0;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_ANALYSIS_OBJECTIVE_H_
