// Flatten, Reshape, Squeeze and Unsqueeze: the same elements under another
// shape. All are zero-copy views of the input, and their backward a view of dY;
// they work for any dtype (int64 labels too).
#include <algorithm>

#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

class ViewOp : public Op {
 public:
  ViewOp(const TensorMeta& input, Shape output) : input_shape_(input.shape) {
    outputs_ = {{input.dtype, std::move(output)}};
  }

  SavedValues Saves(const std::vector<bool>&) const override { return {}; }

  absl::Status Forward(ForwardContext& ctx) const override {
    ctx.SetOutput(0, ctx.input(0).Reshaped(outputs_[0].shape));
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (ctx.needs_grad(0)) {
      ctx.SetGradInput(0, ctx.grad_output(0).Reshaped(input_shape_));
    }
    return absl::OkStatus();
  }

 private:
  Shape input_shape_;
};

// torch.flatten(x, start_dim): [d0, ..., d(s-1), d(s) · ... · d(r-1)].
absl::StatusOr<std::unique_ptr<Op>> CreateFlatten(const OpConfig& c) {
  const Shape& x = c.shape(0);
  const int rank = static_cast<int>(x.size());
  // As in PyTorch, a scalar flattens to [1] (start_dim 0 or -1).
  ASSIGN_OR_RETURN(int start,
                   c.NormalizeAxis("start_dim", c.attrs().GetInt("start_dim"),
                                   std::max(rank, 1)));
  Shape y(x.begin(), x.begin() + std::min(start, rank));
  y.push_back(ElementCount(absl::MakeConstSpan(x).subspan(y.size())));
  return MakeOp(std::make_unique<ViewOp>(c.input(0), std::move(y)));
}

// torch.reshape(x, shape): one -1 is inferred, 0 is a zero-size dim.
absl::StatusOr<std::unique_ptr<Op>> CreateReshape(const OpConfig& c) {
  const Shape& x = c.shape(0);
  ASSIGN_OR_RETURN(Shape y, c.attrs().GetInts("shape"));
  int inferred = -1;
  int64_t known = 1;  // elements of the dims other than -1, saturating
  for (int i = 0; i < static_cast<int>(y.size()); ++i) {
    if (y[i] == -1) {
      if (inferred >= 0) {
        return c.attrs().Invalid("shape", "dims >= 0 with at most one -1");
      }
      inferred = i;
    } else if (y[i] < 0) {
      return c.attrs().Invalid("shape", "dims >= 0 with at most one -1");
    } else {
      known = MulSat(known, y[i]);
    }
  }
  const int64_t count = ElementCount(x);
  if (inferred >= 0 && known == 0) {
    return c.Error("attribute 'shape' ", ShapeToString(y),
                   " leaves its -1 ambiguous: the other dims hold 0 elements (",
                   c.Describe(0), " has shape ", ShapeToString(x), ")");
  }
  if (inferred >= 0 ? count % known != 0 : count != known) {
    return c.Error("attribute 'shape' ", ShapeToString(y), " does not fit the ",
                   count, " elements of ", c.Describe(0), " of shape ",
                   ShapeToString(x));
  }
  if (inferred >= 0) y[inferred] = count / known;
  return MakeOp(std::make_unique<ViewOp>(c.input(0), std::move(y)));
}

// torch.squeeze(x[, dim]): the size-1 dims among `dims` (all size-1 dims
// when empty) removed; a named dim of another size stays, as in PyTorch.
absl::StatusOr<std::unique_ptr<Op>> CreateSqueeze(const OpConfig& c) {
  const Shape& x = c.shape(0);
  const int rank = static_cast<int>(x.size());
  ASSIGN_OR_RETURN(std::vector<int64_t> dims, c.attrs().GetInts("dims"));
  std::vector<bool> named(std::max(rank, 1), dims.empty());
  for (int64_t d : dims) {
    ASSIGN_OR_RETURN(int axis, c.NormalizeAxis("dims", d, std::max(rank, 1)));
    named[axis] = true;
  }
  Shape y;
  for (int d = 0; d < rank; ++d) {
    if (!(named[d] && x[d] == 1)) y.push_back(x[d]);
  }
  return MakeOp(std::make_unique<ViewOp>(c.input(0), std::move(y)));
}

// torch.unsqueeze(x, dim), several dims as ONNX's Unsqueeze: each of `dims`
// is a size-1 dim of y (of rank(x) + len(dims) dims), negative counting
// from y's end.
absl::StatusOr<std::unique_ptr<Op>> CreateUnsqueeze(const OpConfig& c) {
  const Shape& x = c.shape(0);
  ASSIGN_OR_RETURN(std::vector<int64_t> dims, c.attrs().GetInts("dims"));
  if (dims.empty()) return c.attrs().Invalid("dims", "at least one dim");
  const int rank = static_cast<int>(x.size() + dims.size());
  std::vector<bool> added(rank, false);
  for (int64_t d : dims) {
    ASSIGN_OR_RETURN(int axis, c.NormalizeAxis("dims", d, rank));
    if (added[axis]) {
      return c.Error("attribute 'dims' names dim ", axis,
                     " more than once, got ", ShapeToString(dims));
    }
    added[axis] = true;
  }
  Shape y;
  auto next = x.begin();
  for (int d = 0; d < rank; ++d) y.push_back(added[d] ? 1 : *next++);
  return MakeOp(std::make_unique<ViewOp>(c.input(0), std::move(y)));
}

OpSchema FlattenSchema() {
  OpSchema s;
  s.name = "Flatten";
  s.description = "y = x with dims start_dim.. merged into one (a view)";
  s.inputs = {{"x"}};
  s.attrs = {{"start_dim", AttrType::kInt, AttrValue(int64_t{1}),
              "first dim to merge; negative counts from the end"}};
  s.create = CreateFlatten;
  return s;
}

OpSchema ReshapeSchema() {
  OpSchema s;
  s.name = "Reshape";
  s.description = "y = x seen with another shape of equal size (a view)";
  s.inputs = {{"x"}};
  s.attrs = {{"shape", AttrType::kInts, std::nullopt,
              "the new dims; one -1 is inferred, 0 is a zero-size dim"}};
  s.create = CreateReshape;
  return s;
}

OpSchema SqueezeSchema() {
  OpSchema s;
  s.name = "Squeeze";
  s.description = "y = x without size-1 dims (a view), torch.squeeze";
  s.inputs = {{"x"}};
  s.attrs = {{"dims", AttrType::kInts, AttrValue(std::vector<int64_t>{}),
              "dims to remove where they have size 1 (others stay); empty = "
              "every size-1 dim; negative counts from the end"}};
  s.create = CreateSqueeze;
  return s;
}

OpSchema UnsqueezeSchema() {
  OpSchema s;
  s.name = "Unsqueeze";
  s.description = "y = x with size-1 dims inserted (a view), torch.unsqueeze";
  s.inputs = {{"x"}};
  s.attrs = {{"dims", AttrType::kInts, std::nullopt,
              "where the new dims are in y; negative counts from y's end"}};
  s.create = CreateUnsqueeze;
  return s;
}

REGISTER_OP(FlattenSchema());
REGISTER_OP(SqueezeSchema());
REGISTER_OP(UnsqueezeSchema());
REGISTER_OP(ReshapeSchema());

}  // namespace
}  // namespace gradserve
