// Concat: inputs x1, x2, ... joined along one axis. Every input is seen as
// [outer, size_i, inner] and the output as [outer, Σ size_i, inner]. float32
// runs the oneDNN concat primitive forward and, backward, one reorder per
// input from its slice of dY (a sub-memory descriptor); float64, int64,
// empty shapes and more inputs than one oneDNN concat takes copy blocks of
// bytes.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/ops/tensor_op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

// The most sources one oneDNN concat takes: DNNL_ARG_MULTIPLE_SRC + k names
// source k only below DNNL_ARG_MULTIPLE_DST. More inputs are block copies.
constexpr int64_t kMaxDnnlSources =
    DNNL_ARG_MULTIPLE_DST - DNNL_ARG_MULTIPLE_SRC;

class ConcatOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    const TensorMeta& first = c.input(0);
    if (IsFloating(first.dtype)) RETURN_IF_ERROR(c.ExpectFloat(0));
    const Shape& s0 = first.shape;
    const int rank = static_cast<int>(s0.size());
    if (rank == 0) {
      return c.Error(c.Describe(0),
                     " must have rank >= 1 (scalars cannot be concatenated), "
                     "got shape []");
    }
    ASSIGN_OR_RETURN(int axis,
                     c.NormalizeAxis("axis", c.attrs().GetInt("axis"), rank));
    auto op = std::make_unique<ConcatOp>();
    Shape y = s0;
    y[axis] = 0;
    for (int i = 0; i < c.num_inputs(); ++i) {
      const TensorMeta& in = c.input(i);
      if (in.dtype != first.dtype) {
        return c.Error(c.Describe(i), " must be ", DTypeName(first.dtype),
                       " like ", c.Describe(0), ", got ", in.ToString());
      }
      bool fits = in.shape.size() == s0.size();
      for (int d = 0; fits && d < rank; ++d) {
        fits = d == axis || in.shape[d] == s0[d];
      }
      if (!fits) {
        return c.Error(c.Describe(i), " has shape ", ShapeToString(in.shape),
                       " but ", c.Describe(0), " has shape ", ShapeToString(s0),
                       "; inputs must have rank ", rank,
                       " and equal dims except along axis ", axis);
      }
      op->offsets_.push_back(y[axis]);
      op->sizes_.push_back(in.shape[axis]);
      const std::optional<int64_t> total = CheckedAdd(y[axis], in.shape[axis]);
      if (!total) {
        return c.TooLarge("the inputs' dims along axis ", axis,
                          " add up to more than int64 holds (at ",
                          c.Describe(i), " of shape ", ShapeToString(in.shape),
                          ")");
      }
      y[axis] = *total;
    }
    op->axis_ = axis;
    op->split_ = SplitAtAxis(y, axis);
    op->outputs_ = {{first.dtype, y}};
    return std::unique_ptr<Op>(std::move(op));
  }

  SavedValues Saves(const std::vector<bool>&) const override { return {}; }

  absl::Status Prepare(const PrepareInfo& info) override {
    const int64_t sources = std::count_if(
        sizes_.begin(), sizes_.end(), [](int64_t size) { return size > 0; });
    if (!RunsOnDnnl(outputs_[0]) || sources > kMaxDnnlSources) {
      return absl::OkStatus();  // block copies
    }
    return CatchDnnl(node_, [&] {
      auto& eng = CpuEngine();
      std::vector<dnnl::memory::desc> srcs;
      for (int64_t size : sizes_) {
        if (size > 0) srcs.push_back(Desc(size));
      }
      forward_ = MakePrimitive<dnnl::concat>(dnnl::concat::primitive_desc(
          Desc(split_.dim), 1, srcs, eng, DefaultAttr()));
      slices_.resize(sizes_.size());
      for (size_t i = 0; i < sizes_.size(); ++i) {
        if (!info.backward_will_run || !info.needs_grad[i] || sizes_[i] == 0) {
          continue;
        }
        slices_[i] = MakePrimitive<dnnl::reorder>(dnnl::reorder::primitive_desc(
            eng, SliceDesc(i), eng, Desc(sizes_[i]), DefaultAttr()));
      }
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    Tensor& y = ctx.AllocateOutput(0);
    if (forward_) {
      DnnlArgs args = {{DNNL_ARG_DST, WrapTensor(Desc(split_.dim), y)}};
      int k = 0;
      for (size_t i = 0; i < sizes_.size(); ++i) {
        if (sizes_[i] == 0) continue;
        args[DNNL_ARG_MULTIPLE_SRC + k++] =
            WrapTensor(Desc(sizes_[i]), ctx.input(i));
      }
      return ExecuteDnnl(ctx.dnnl(), node_, *forward_, args);
    }
    for (size_t i = 0; i < sizes_.size(); ++i) {
      const size_t block = BlockBytes(sizes_[i]);
      CopyBlocks(split_.outer, block,
                 static_cast<const uint8_t*>(ctx.input(i).raw_data()), block,
                 static_cast<uint8_t*>(y.raw_data()) + OffsetBytes(i),
                 BlockBytes(split_.dim));
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const Tensor& dy = ctx.grad_output(0);
    for (size_t i = 0; i < sizes_.size(); ++i) {
      if (!ctx.needs_grad(i)) continue;
      Tensor dx = Tensor::Empty(dy.dtype(), InputShape(i));
      if (i < slices_.size() && slices_[i]) {
        RETURN_IF_ERROR(
            ExecuteDnnl(ctx.dnnl(), node_, *slices_[i],
                        {{DNNL_ARG_FROM, WrapTensor(SliceDesc(i), dy)},
                         {DNNL_ARG_TO, WrapTensor(Desc(sizes_[i]), dx)}}));
      } else {
        const size_t block = BlockBytes(sizes_[i]);
        CopyBlocks(split_.outer, block,
                   static_cast<const uint8_t*>(dy.raw_data()) + OffsetBytes(i),
                   BlockBytes(split_.dim), static_cast<uint8_t*>(dx.raw_data()),
                   block);
      }
      ctx.SetGradInput(i, std::move(dx));
    }
    return absl::OkStatus();
  }

 private:
  // [outer, size, inner], row-major float32.
  dnnl::memory::desc Desc(int64_t size) const {
    return PlainDesc({split_.outer, size, split_.inner});
  }
  // Input i's part of the output.
  dnnl::memory::desc SliceDesc(size_t i) const {
    return Desc(split_.dim)
        .submemory_desc({split_.outer, sizes_[i], split_.inner},
                        {0, offsets_[i], 0});
  }
  // Bytes of one [size, inner] block, and where input i's block starts in
  // an output row.
  size_t BlockBytes(int64_t size) const {
    return static_cast<size_t>(size * split_.inner) *
           DTypeSize(outputs_[0].dtype);
  }
  size_t OffsetBytes(size_t i) const { return BlockBytes(offsets_[i]); }
  Shape InputShape(size_t i) const {
    Shape shape = outputs_[0].shape;
    shape[axis_] = sizes_[i];
    return shape;
  }

  int axis_ = 0;
  std::vector<int64_t> sizes_;    // each input's dim along the axis
  std::vector<int64_t> offsets_;  // where each input starts along it
  AxisSplit split_;               // of the output
  std::optional<DnnlPrimitive> forward_;
  std::vector<std::optional<DnnlPrimitive>> slices_;  // per input
};

OpSchema ConcatSchema() {
  OpSchema s;
  s.name = "Concat";
  s.description =
      "y = x1, x2, ... joined along axis; the other dims must agree";
  s.inputs = {{"x", /*optional=*/false, /*variadic=*/true}};
  s.attrs = {{"axis", AttrType::kInt, AttrValue(int64_t{1}),
              "the axis to join along; negative counts from the end"}};
  s.create = ConcatOp::Create;
  return s;
}

REGISTER_OP(ConcatSchema());

}  // namespace
}  // namespace gradserve
