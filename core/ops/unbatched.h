// PyTorch runs convolutions, pooling and the class losses on unbatched
// inputs too: Conv1d on [C, L], Conv2d and the pools on [C, H, W],
// CrossEntropyLoss and NLLLoss on [C] with a 0-d target. Such a node is the
// batched op on a batch of one, seen without the batch dim: the same bytes,
// so the adapter only reshapes (inputs and outputs plain, blocked layouts
// reordered at its edges).
#ifndef GRADSERVE_CORE_OPS_UNBATCHED_H_
#define GRADSERVE_CORE_OPS_UNBATCHED_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/op.h"

namespace gradserve {

// Base of the adapters that run a wrapped op on views or copies of their
// inputs (through the contexts' Replace* calls): plain tensors at their
// edges, the wrapped op's flops, saved values and primitives (prepared for
// plain inputs), and what it allocates plus `extra_bytes`.
class WrappingOp : public Op {
 public:
  explicit WrappingOp(std::unique_ptr<Op> inner) : inner_(std::move(inner)) {}

  int64_t ForwardFlops() const override { return inner_->ForwardFlops(); }
  int64_t BackwardFlops() const override { return inner_->BackwardFlops(); }
  int64_t ExtraBytes() const override;
  absl::Status Prepare(const PrepareInfo& info) override;
  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    return inner_->Saves(needs_grad);
  }

 protected:
  const Op& inner() const { return *inner_; }
  // Bytes the adapter's own copies take (beyond the wrapped op's).
  void set_extra_bytes(int64_t bytes) { extra_bytes_ = bytes; }
  absl::Status ForwardInner(ForwardContext& ctx) const {
    return inner_->Forward(ctx);
  }
  absl::Status BackwardInner(BackwardContext& ctx) const {
    return inner_->Backward(ctx);
  }

 private:
  std::unique_ptr<Op> inner_;
  int64_t extra_bytes_ = 0;
};

// create(c), unless input 0 has rank `batched_rank` - 1: then the op that
// `create` builds for the `unsqueezed` inputs with a leading dim of 1
// (those present), wrapped so that every output of rank >= 1 drops its
// leading dim.
absl::StatusOr<std::unique_ptr<Op>> CreateMaybeUnbatched(
    const OpConfig& c, int batched_rank, const std::vector<int>& unsqueezed,
    const OpFactory& create);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_UNBATCHED_H_
