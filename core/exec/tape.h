// Running a program. The forward pass runs the nodes in order, freeing each
// value after its last reader, and leaves on a Tape what a backward pass
// needs (values ops declared saved, their saved state); the backward pass,
// now or in a later call, runs reverse-mode autodiff from the loss and the
// seeds over that tape, summing gradients where a value fans out.
#ifndef GRADSERVE_CORE_EXEC_TAPE_H_
#define GRADSERVE_CORE_EXEC_TAPE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/compile/program.h"
#include "core/exec/value_store.h"
#include "core/tensor.h"

namespace gradserve {

// Sees a run's values as they are computed (diagnostics): every node output
// after its node's forward pass, and the gradient of every node output once
// complete in the backward pass; plain tensors, valid during the call.
class RunObserver {
 public:
  virtual ~RunObserver() = default;
  // `node` is the producer's position in program.nodes().
  virtual void OnOutput(const Program& program, int node, int value,
                        const Tensor& plain) = 0;
  virtual void OnGradient(const Program& program, int value,
                          const Tensor& plain) = 0;
};

struct RunControl {
  uint64_t rng_seed = 0;  // dropout masks: same seed, same masks
  // Polled between nodes; a non-OK status stops the run with that status.
  std::function<absl::Status()> check_cancelled;
  // Null on the normal path: then a run does nothing for observers.
  RunObserver* observer = nullptr;
};

struct ForwardResult {
  std::map<std::string, Tensor> outputs;  // fetched values
  std::map<std::string, Tensor> buffers;  // updated buffers (running stats)
};

struct BackwardArgs {
  bool from_loss = false;  // start from the program's loss
  TensorMap grad_seeds;    // and/or dL/dv for seedable values
  // A subset of the program's wrt; empty = all of it.
  std::vector<std::string> wrt;
  bool keep = false;  // leave the tape whole for another backward pass
};

class Tape {
 public:
  // Binds `feeds` (graph inputs and overrides) and `state` (parameters and
  // buffers) to the program's sources and runs the forward pass. Float
  // tensors of another float dtype than the program's are converted.
  static absl::StatusOr<std::unique_ptr<Tape>> Forward(
      std::shared_ptr<const Program> program, const TensorMap& feeds,
      const ValueSet& state, const RunControl& control, ForwardResult* result);

  // Whether Backward would accept `args`; checks names, shapes and the wrt
  // subset without running anything.
  absl::Status CheckBackward(const BackwardArgs& args) const;
  // dL/dv for the wrt values. Without `keep`, frees the tape as it goes;
  // afterwards the tape is spent.
  absl::StatusOr<std::map<std::string, Tensor>> Backward(
      const BackwardArgs& args, const RunControl& control);

  const Program& program() const { return *program_; }
  const std::shared_ptr<const Program>& shared_program() const {
    return program_;
  }
  bool spent() const { return spent_; }
  // Bytes of the tensors the tape holds.
  int64_t bytes() const;

  ~Tape();

 private:
  explicit Tape(std::shared_ptr<const Program> program);
  class Pass;

  std::shared_ptr<const Program> program_;
  std::vector<Tensor> values_;
  std::vector<std::vector<Tensor>> saved_;  // per node
  std::vector<Tensor> plain_;               // plain copies of blocked values
  bool spent_ = false;
};

// Forward then backward (when the program has one) in one call, as Compute
// runs: the backward pass starts from the loss and `grad_seeds`.
struct RunResult {
  std::map<std::string, Tensor> outputs;
  std::map<std::string, Tensor> gradients;  // by wrt value name
  std::map<std::string, Tensor> buffers;
};
absl::StatusOr<RunResult> Run(std::shared_ptr<const Program> program,
                              const TensorMap& feeds, const ValueSet& state,
                              const TensorMap& grad_seeds,
                              const RunControl& control);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_EXEC_TAPE_H_
