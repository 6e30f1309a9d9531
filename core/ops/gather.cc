// Gather (torch.gather(x, dim, index)) and IndexSelect (torch.index_select(x,
// dim, index)), index int64. Every index must lie in [0, size of x's dim)
// (no wrap-around of negative indices, as in PyTorch), or with
// wrap_negative = 1 in [-size, size), a negative one counting from the end
// (as ONNX's Gather and GatherElements, and NumPy): one that does not is
// INVALID_ARGUMENT naming its value and position, found before the output
// is allocated. x may be of any dtype; dL/dx adds dY into the selected
// elements (scatter_add / index_add, repeated indices summed).
//   Gather       y has index's shape: y[j] = x[j with j[dim] = index[j]];
//                index has x's rank (a scalar counts as rank 1) and no
//                larger dims than x's apart from dim.
//   IndexSelect  index a vector (or a scalar: one element); y is x with dim
//                replaced by the selected positions. A scalar x takes one
//                index (PyTorch's backward fails on more).
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/ops/source_grad.h"
#include "core/ops/tensor_op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

// The multi-index of flat element i of `shape`, for messages.
std::string Position(int64_t i, const Shape& shape) {
  std::vector<int64_t> index(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    index[d] = i % shape[d];
    i /= shape[d];
  }
  return absl::StrCat("[", absl::StrJoin(index, ", "), "]");
}

class IndexOp : public Op {
 public:
  // Checks every index against the dim's size before anything is allocated.
  absl::Status CheckIndices(const Tensor& index) const {
    const int64_t* ip = index.data<int64_t>();
    const int64_t low = wrap_negative_ ? -split_.dim : 0;
    for (int64_t i = 0; i < index.num_elements(); ++i) {
      if (ip[i] < low || ip[i] >= split_.dim) {
        return absl::InvalidArgumentError(absl::StrCat(
            label_, ": index ", ip[i], " at ", Position(i, index.shape()),
            " of ", index_name_, " is out of range for dim ", dim_, " of ",
            x_name_, " (size ", split_.dim, "): indices must lie in [", low,
            ", ", split_.dim, ")"));
      }
    }
    return absl::OkStatus();
  }

  // A checked index as a position along dim.
  int64_t Wrapped(int64_t index) const {
    return index < 0 ? index + split_.dim : index;
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    return {{1}, {}};
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& index = ctx.input(1);
    RETURN_IF_ERROR(CheckIndices(index));
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.AllocateOutput(0);
    if (DTypeSize(x.dtype()) == 4) {
      Walk(index, [&](int64_t o, int64_t i) {
        y.data<uint32_t>()[o] = x.data<uint32_t>()[i];
      });
    } else {
      Walk(index, [&](int64_t o, int64_t i) {
        y.data<uint64_t>()[o] = x.data<uint64_t>()[i];
      });
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    ctx.SetGradInput(0, AddIntoSources(ctx.grad_output(0), x_,
                                       [&](auto f) { Walk(ctx.input(1), f); }));
    return absl::OkStatus();
  }

 protected:
  // Calls f(o, i) for every output element o and the element i of x it
  // reads.
  virtual void Walk(const Tensor& index,
                    const std::function<void(int64_t, int64_t)>& f) const = 0;

  // Checks x (any dtype) and index (int64) and reads dim: x's rank, a
  // scalar counting as one dim.
  static absl::StatusOr<int> ReadDim(const OpConfig& c) {
    const int64_t wrap = c.attrs().GetInt("wrap_negative");
    if (wrap != 0 && wrap != 1)
      return c.attrs().Invalid("wrap_negative", "0 or 1");
    if (IsFloating(c.input(0).dtype)) RETURN_IF_ERROR(c.ExpectFloat(0));
    RETURN_IF_ERROR(c.ExpectInt64(1));
    const int rank = static_cast<int>(std::max<size_t>(c.shape(0).size(), 1));
    return c.NormalizeAxis("dim", c.attrs().GetInt("dim"), rank);
  }

  // Names for messages: "node 'g' (Gather)", "input 'index' (value 'i')".
  void Name(const OpConfig& c, const std::string& op) {
    wrap_negative_ = c.attrs().GetInt("wrap_negative") != 0;
    label_ = absl::StrCat("node '", c.node(), "' (", op, ")");
    x_name_ = c.Describe(0);
    index_name_ = c.Describe(1);
  }

  std::string label_, x_name_, index_name_;
  int dim_ = 0;
  bool wrap_negative_ = false;
  Shape x_;
  AxisSplit split_;  // of x around dim
};

class GatherOp : public IndexOp {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    ASSIGN_OR_RETURN(int dim, ReadDim(c));
    const Shape& x = c.shape(0);
    const Shape& index = c.shape(1);
    const Shape px = x.empty() ? Shape{1} : x;
    const Shape pi = index.empty() ? Shape{1} : index;
    const int rank = static_cast<int>(px.size());
    bool fits = pi.size() == px.size();
    for (int d = 0; fits && d < rank; ++d) fits = d == dim || pi[d] <= px[d];
    if (!fits) {
      return c.Error(c.Describe(1), " has shape ", ShapeToString(index),
                     " but ", c.Describe(0), " has shape ", ShapeToString(x),
                     "; index must have x's rank and dims no larger than x's "
                     "except along dim ",
                     dim);
    }
    auto op = std::make_unique<GatherOp>();
    op->Name(c, "Gather");
    op->dim_ = dim;
    op->x_ = x;
    op->padded_x_ = px;
    op->padded_index_ = pi;
    op->split_ = SplitAtAxis(px, dim);
    op->outputs_ = {{c.input(0).dtype, index}};
    return std::unique_ptr<Op>(std::move(op));
  }

 private:
  void Walk(const Tensor& index,
            const std::function<void(int64_t, int64_t)>& f) const override {
    const int rank = static_cast<int>(padded_index_.size());
    std::vector<int64_t> strides(rank, 1);
    for (int d = rank - 2; d >= 0; --d) {
      strides[d] = strides[d + 1] * padded_x_[d + 1];
    }
    const int64_t* ip = index.data<int64_t>();
    std::vector<int64_t> j(rank, 0);
    for (int64_t o = 0; o < index.num_elements(); ++o) {
      int64_t offset = 0;
      for (int d = 0; d < rank; ++d) {
        offset += (d == dim_ ? Wrapped(ip[o]) : j[d]) * strides[d];
      }
      f(o, offset);
      for (int d = rank - 1; d >= 0; --d) {
        if (++j[d] < padded_index_[d]) break;
        j[d] = 0;
      }
    }
  }

  Shape padded_x_, padded_index_;
};

class IndexSelectOp : public IndexOp {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    ASSIGN_OR_RETURN(int dim, ReadDim(c));
    const Shape& x = c.shape(0);
    const Shape& index = c.shape(1);
    if (index.size() > 1) {
      return c.Error(c.Describe(1), " must be a vector or a scalar, got shape ",
                     ShapeToString(index));
    }
    const int64_t count = ElementCount(index);
    if (x.empty() && count != 1) {
      return c.Error(c.Describe(1), " must hold one index for a scalar ",
                     c.Describe(0), ", got shape ", ShapeToString(index));
    }
    auto op = std::make_unique<IndexSelectOp>();
    op->Name(c, "IndexSelect");
    op->dim_ = dim;
    op->x_ = x;
    op->split_ = SplitAtAxis(x, dim);
    Shape y = x;
    if (!y.empty()) y[dim] = count;
    op->outputs_ = {{c.input(0).dtype, y}};
    return std::unique_ptr<Op>(std::move(op));
  }

 private:
  void Walk(const Tensor& index,
            const std::function<void(int64_t, int64_t)>& f) const override {
    const int64_t* ip = index.data<int64_t>();
    const int64_t count = index.num_elements();
    int64_t o = 0;
    for (int64_t outer = 0; outer < split_.outer; ++outer) {
      for (int64_t k = 0; k < count; ++k) {
        const int64_t base =
            (outer * split_.dim + Wrapped(ip[k])) * split_.inner;
        for (int64_t i = 0; i < split_.inner; ++i) f(o++, base + i);
      }
    }
  }
};

OpSchema IndexSchema(const std::string& name) {
  OpSchema s;
  s.name = name;
  s.inputs = {{"x"}, {"index"}};
  s.attrs = {{"dim", AttrType::kInt, std::nullopt,
              "the dim indexed; negative counts from the end"},
             {"wrap_negative", AttrType::kInt, AttrValue(int64_t{0}),
              "1: an index in [-size, 0) counts from the end (ONNX's)"}};
  if (name == "Gather") {
    s.description =
        "y[j] = x[j with j[dim] = index[j]], torch.gather; index int64";
    s.create = GatherOp::Create;
  } else {
    s.description =
        "y = x at positions index (int64, a vector) along dim, "
        "torch.index_select";
    s.create = IndexSelectOp::Create;
  }
  return s;
}

REGISTER_OP(IndexSchema("Gather"));
REGISTER_OP(IndexSchema("IndexSelect"));

}  // namespace
}  // namespace gradserve
