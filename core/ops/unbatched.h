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

// create(c), unless input 0 has rank `batched_rank` - 1: then the op that
// `create` builds for the `unsqueezed` inputs with a leading dim of 1
// (those present), wrapped so that every output of rank >= 1 drops its
// leading dim.
absl::StatusOr<std::unique_ptr<Op>> CreateMaybeUnbatched(
    const OpConfig& c, int batched_rank, const std::vector<int>& unsqueezed,
    const OpFactory& create);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_UNBATCHED_H_
