#include "core/ops/unbatched.h"

#include <limits>
#include <utility>

#include "core/checked_math.h"
#include "core/dnnl_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

int64_t AddSat(int64_t a, int64_t b) {
  return CheckedAdd(a, b).value_or(std::numeric_limits<int64_t>::max());
}

Shape Unsqueezed(Shape s) {
  s.insert(s.begin(), 1);
  return s;
}

class UnbatchedOp : public WrappingOp {
 public:
  UnbatchedOp(std::unique_ptr<Op> inner, std::vector<int> unsqueezed,
              std::vector<Shape> input_shapes)
      : WrappingOp(std::move(inner)),
        unsqueezed_(std::move(unsqueezed)),
        input_shapes_(std::move(input_shapes)) {
    for (TensorMeta meta : this->inner().outputs()) {
      if (!meta.shape.empty()) meta.shape.erase(meta.shape.begin());
      outputs_.push_back(std::move(meta));
    }
    // Plain copies of blocked outputs and gradients.
    int64_t bytes = 0;
    for (const TensorMeta& meta : outputs_) {
      bytes = AddSat(bytes, meta.num_bytes());
    }
    const int64_t dsize = static_cast<int64_t>(DTypeSize(outputs_[0].dtype));
    for (const Shape& s : input_shapes_) {
      bytes = AddSat(bytes, MulSat(ElementCount(s), dsize));
    }
    set_extra_bytes(bytes);
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    for (int i : unsqueezed_) {
      if (ctx.input(i).defined()) ctx.ReplaceInput(i, Batched(ctx.input(i)));
    }
    RETURN_IF_ERROR(ForwardInner(ctx));
    for (int j = 0; j < ctx.num_outputs(); ++j) {
      Tensor& out = ctx.mutable_output(j);
      if (out.defined()) {
        out = Plain(out, ctx.dnnl()).Reshaped(outputs_[j].shape);
      }
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    for (int i : unsqueezed_) {
      if (ctx.input(i).defined()) ctx.ReplaceInput(i, Batched(ctx.input(i)));
    }
    for (int j = 0; j < ctx.num_outputs(); ++j) {
      const Shape& shape = inner().outputs()[j].shape;
      if (ctx.output(j).defined()) {
        ctx.ReplaceOutput(j, ctx.output(j).Reshaped(shape));
      }
      if (ctx.has_grad_output(j)) {
        ctx.ReplaceGradOutput(j, ctx.grad_output(j).Reshaped(shape));
      }
    }
    RETURN_IF_ERROR(BackwardInner(ctx));
    for (int i = 0; i < ctx.num_inputs(); ++i) {
      Tensor& grad = ctx.mutable_grad_input(i);
      if (grad.defined()) {
        grad = Plain(grad, ctx.dnnl()).Reshaped(input_shapes_[i]);
      }
    }
    return absl::OkStatus();
  }

 private:
  static Tensor Batched(const Tensor& t) {
    return t.Reshaped(Unsqueezed(t.shape()));
  }

  std::vector<int> unsqueezed_;
  std::vector<Shape> input_shapes_;  // as the node has them
};

}  // namespace

int64_t WrappingOp::ExtraBytes() const {
  return AddSat(inner_->ExtraBytes(), extra_bytes_);
}

absl::Status WrappingOp::Prepare(const PrepareInfo& info) {
  inner_->set_node(node());
  PrepareInfo plain = info;  // adapters take plain inputs only
  for (auto& layout : plain.input_layouts) layout = nullptr;
  return inner_->Prepare(plain);
}

absl::StatusOr<std::unique_ptr<Op>> CreateMaybeUnbatched(
    const OpConfig& c, int batched_rank, const std::vector<int>& unsqueezed,
    const OpFactory& create) {
  if (!c.has_input(0) ||
      static_cast<int>(c.shape(0).size()) != batched_rank - 1) {
    return create(c);
  }
  std::vector<std::optional<TensorMeta>> inputs = c.inputs();
  std::vector<Shape> shapes;
  for (const auto& meta : inputs)
    shapes.push_back(meta ? meta->shape : Shape{});
  for (int i : unsqueezed) {
    if (i < c.num_inputs() && inputs[i]) {
      inputs[i]->shape = Unsqueezed(inputs[i]->shape);
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Op> inner, create(c.WithInputs(inputs)));
  return std::unique_ptr<Op>(std::make_unique<UnbatchedOp>(
      std::move(inner), unsqueezed, std::move(shapes)));
}

}  // namespace gradserve
