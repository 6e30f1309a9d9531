// Permute (torch.permute(x, dims)) and Transpose (torch.transpose(x, dim0,
// dim1)): y's dim d is x's dim perm[d]. Both copy (any dtype); the
// gradient is dY permuted back by the inverse permutation.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

// out = in with its dims permuted: out's dim d is in's dim perm[d].
template <typename E>
void PermuteTyped(const E* in, const Shape& in_shape,
                  const std::vector<int>& perm, E* out) {
  const int rank = static_cast<int>(perm.size());
  const int64_t total = ElementCount(in_shape);
  if (total == 0) return;
  if (rank == 0) {
    out[0] = in[0];
    return;
  }
  std::vector<int64_t> in_strides(rank, 1);
  for (int d = rank - 2; d >= 0; --d) {
    in_strides[d] = in_strides[d + 1] * in_shape[d + 1];
  }
  std::vector<int64_t> sizes(rank), strides(rank);
  for (int d = 0; d < rank; ++d) {
    sizes[d] = in_shape[perm[d]];
    strides[d] = in_strides[perm[d]];
  }
  std::vector<int64_t> index(rank, 0);
  int64_t offset = 0;
  const int64_t inner = sizes.back(), inner_stride = strides.back();
  for (int64_t o = 0; o < total; o += inner) {
    for (int64_t k = 0; k < inner; ++k)
      out[o + k] = in[offset + k * inner_stride];
    for (int d = rank - 2; d >= 0; --d) {
      offset += strides[d];
      if (++index[d] < sizes[d]) break;
      offset -= strides[d] * sizes[d];
      index[d] = 0;
    }
  }
}

Tensor Permuted(const Tensor& in, const std::vector<int>& perm) {
  Shape shape(perm.size());
  for (size_t d = 0; d < perm.size(); ++d) shape[d] = in.dim(perm[d]);
  Tensor out = Tensor::Empty(in.dtype(), shape);
  if (DTypeSize(in.dtype()) == 4) {
    PermuteTyped(in.data<uint32_t>(), in.shape(), perm, out.data<uint32_t>());
  } else {
    PermuteTyped(in.data<uint64_t>(), in.shape(), perm, out.data<uint64_t>());
  }
  return out;
}

class PermuteOp : public Op {
 public:
  PermuteOp(const TensorMeta& x, std::vector<int> perm)
      : perm_(std::move(perm)), inverse_(perm_.size()) {
    Shape y(perm_.size());
    for (size_t d = 0; d < perm_.size(); ++d) {
      y[d] = x.shape[perm_[d]];
      inverse_[perm_[d]] = static_cast<int>(d);
    }
    outputs_ = {{x.dtype, y}};
  }

  SavedValues Saves(const std::vector<bool>&) const override { return {}; }

  absl::Status Forward(ForwardContext& ctx) const override {
    ctx.SetOutput(0, Permuted(ctx.input(0), perm_));
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (ctx.needs_grad(0)) {
      ctx.SetGradInput(0, Permuted(ctx.grad_output(0), inverse_));
    }
    return absl::OkStatus();
  }

 private:
  std::vector<int> perm_, inverse_;
};

absl::Status CheckFloat(const OpConfig& c) {
  return IsFloating(c.input(0).dtype) ? c.ExpectFloat(0) : absl::OkStatus();
}

// torch.permute: dims a permutation of x's dims, negative counting from
// the end; a scalar takes [].
absl::StatusOr<std::unique_ptr<Op>> CreatePermute(const OpConfig& c) {
  RETURN_IF_ERROR(CheckFloat(c));
  const int rank = static_cast<int>(c.shape(0).size());
  ASSIGN_OR_RETURN(std::vector<int64_t> dims, c.attrs().GetInts("dims"));
  if (static_cast<int>(dims.size()) != rank) {
    return c.Error("attribute 'dims' must list the ", rank, " dims of ",
                   c.Describe(0), " of shape ", ShapeToString(c.shape(0)),
                   ", got ", ShapeToString(dims));
  }
  std::vector<int> perm;
  std::vector<bool> seen(rank, false);
  for (int64_t d : dims) {
    ASSIGN_OR_RETURN(int axis, c.NormalizeAxis("dims", d, rank));
    if (seen[axis]) {
      return c.Error("attribute 'dims' names dim ", axis,
                     " more than once, got ", ShapeToString(dims));
    }
    seen[axis] = true;
    perm.push_back(axis);
  }
  return MakeOp(std::make_unique<PermuteOp>(c.input(0), std::move(perm)));
}

// torch.transpose: swaps dim0 and dim1; a scalar's one dim is 0 or -1.
absl::StatusOr<std::unique_ptr<Op>> CreateTranspose(const OpConfig& c) {
  RETURN_IF_ERROR(CheckFloat(c));
  const int rank = static_cast<int>(c.shape(0).size());
  ASSIGN_OR_RETURN(int a, c.NormalizeAxis("dim0", c.attrs().GetInt("dim0"),
                                          std::max(rank, 1)));
  ASSIGN_OR_RETURN(int b, c.NormalizeAxis("dim1", c.attrs().GetInt("dim1"),
                                          std::max(rank, 1)));
  std::vector<int> perm(rank);
  for (int d = 0; d < rank; ++d) perm[d] = d;
  if (rank > 0) std::swap(perm[a], perm[b]);
  return MakeOp(std::make_unique<PermuteOp>(c.input(0), std::move(perm)));
}

OpSchema PermuteSchema() {
  OpSchema s;
  s.name = "Permute";
  s.description =
      "y = x with its dims reordered, torch.permute: y's dim d "
      "is x's dim dims[d]";
  s.inputs = {{"x"}};
  s.attrs = {{"dims", AttrType::kInts, std::nullopt,
              "a permutation of x's dims; negative counts from the end"}};
  s.create = CreatePermute;
  return s;
}

OpSchema TransposeSchema() {
  OpSchema s;
  s.name = "Transpose";
  s.description = "y = x with dims dim0 and dim1 swapped, torch.transpose";
  s.inputs = {{"x"}};
  s.attrs = {{"dim0", AttrType::kInt, std::nullopt,
              "a dim to swap; negative counts from the end"},
             {"dim1", AttrType::kInt, std::nullopt, "the other dim"}};
  s.create = CreateTranspose;
  return s;
}

REGISTER_OP(PermuteSchema());
REGISTER_OP(TransposeSchema());

}  // namespace
}  // namespace gradserve
