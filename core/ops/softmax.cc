// Softmax and LogSoftmax along one axis. The input is seen as
// [outer, axis, inner]; float32 runs oneDNN softmax_v2 (softmax_accurate /
// softmax_log), float64 a loop that subtracts the maximum before exp.
// Backward reads the output only (as oneDNN's backward does):
//   Softmax:    dx = y · (dy − Σ dy·y)
//   LogSoftmax: dx = dy − exp(y) · Σ dy
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/ops/tensor_op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

using dnnl::algorithm;
using dnnl::softmax_v2_backward;
using dnnl::softmax_v2_forward;

class SoftmaxOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    bool log) {
    RETURN_IF_ERROR(c.ExpectFloat(0));
    RETURN_IF_ERROR(CheckDtypeAttr(c));
    const Shape& x = c.shape(0);
    // As in PyTorch, a scalar is a one-element vector (axis 0 or -1).
    const int rank = std::max<int>(static_cast<int>(x.size()), 1);
    ASSIGN_OR_RETURN(int axis,
                     c.NormalizeAxis("axis", c.attrs().GetInt("axis"), rank));
    auto op = std::make_unique<SoftmaxOp>();
    op->log_ = log;
    op->split_ = SplitAtAxis(x, axis);
    op->outputs_ = {{c.float_dtype(), x}};
    return std::unique_ptr<Op>(std::move(op));
  }

  // Per element: subtract the maximum, exp, add to the sum, divide (or
  // subtract the log of the sum).
  int64_t ForwardFlops() const override {
    return MulSat(4, outputs_[0].num_elements());
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[0]) s.outputs.push_back(0);
    return s;
  }

  absl::Status Prepare(const PrepareInfo& info) override {
    if (!RunsOnDnnl(outputs_[0])) return absl::OkStatus();
    return CatchDnnl(node_, [&] {
      auto& eng = CpuEngine();
      const auto data = Desc();
      const algorithm alg =
          log_ ? algorithm::softmax_log : algorithm::softmax_accurate;
      const auto kind = info.backward_will_run
                            ? dnnl::prop_kind::forward_training
                            : dnnl::prop_kind::forward_inference;
      softmax_v2_forward::primitive_desc fwd_pd(
          softmax_v2_forward::desc(kind, alg, data, data, 1), DefaultAttr(),
          eng);
      forward_ = MakePrimitive<softmax_v2_forward>(fwd_pd);
      if (info.backward_will_run && info.needs_grad[0]) {
        softmax_v2_backward::primitive_desc pd(
            softmax_v2_backward::desc(alg, data, data, data, 1), DefaultAttr(),
            eng, fwd_pd);
        backward_ = MakePrimitive<softmax_v2_backward>(pd);
      }
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.AllocateOutput(0);
    if (forward_) {
      return ExecuteDnnl(ctx.dnnl(), node_, *forward_,
                         {{DNNL_ARG_SRC, WrapTensor(Desc(), x)},
                          {DNNL_ARG_DST, WrapTensor(Desc(), y)}});
    }
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      ForEachRow([&](int64_t start, int64_t stride) {
        T max = xp[start];
        for (int64_t k = 1; k < split_.dim; ++k) {
          max = std::max(max, xp[start + k * stride]);
        }
        T sum = 0;
        for (int64_t k = 0; k < split_.dim; ++k) {
          const int64_t i = start + k * stride;
          yp[i] = xp[i] - max;
          sum += std::exp(yp[i]);
        }
        const T log_sum = std::log(sum);
        for (int64_t k = 0; k < split_.dim; ++k) {
          const int64_t i = start + k * stride;
          yp[i] = log_ ? yp[i] - log_sum : std::exp(yp[i]) / sum;
        }
      });
    });
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    const Tensor& y = ctx.output(0);
    const Tensor& dy = ctx.grad_output(0);
    Tensor dx = Tensor::Empty(outputs_[0]);
    if (backward_) {
      RETURN_IF_ERROR(
          ExecuteDnnl(ctx.dnnl(), node_, *backward_,
                      {{DNNL_ARG_DST, WrapTensor(Desc(), y)},
                       {DNNL_ARG_DIFF_DST, WrapTensor(Desc(), dy)},
                       {DNNL_ARG_DIFF_SRC, WrapTensor(Desc(), dx)}}));
    } else {
      DispatchFloat(dx.dtype(), [&](auto zero) {
        using T = decltype(zero);
        const T* yp = y.data<T>();
        const T* gp = dy.data<T>();
        T* dp = dx.data<T>();
        ForEachRow([&](int64_t start, int64_t stride) {
          T sum = 0;
          for (int64_t k = 0; k < split_.dim; ++k) {
            const int64_t i = start + k * stride;
            sum += log_ ? gp[i] : gp[i] * yp[i];
          }
          for (int64_t k = 0; k < split_.dim; ++k) {
            const int64_t i = start + k * stride;
            dp[i] =
                log_ ? gp[i] - std::exp(yp[i]) * sum : yp[i] * (gp[i] - sum);
          }
        });
      });
    }
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  dnnl::memory::desc Desc() const {
    return PlainDesc({split_.outer, split_.dim, split_.inner});
  }

  // Calls f(start, stride) for each line along the axis: its elements are
  // start + k * stride for k in [0, dim).
  template <typename F>
  void ForEachRow(F&& f) const {
    if (split_.dim == 0) return;
    for (int64_t o = 0; o < split_.outer; ++o) {
      for (int64_t i = 0; i < split_.inner; ++i) {
        f(o * split_.dim * split_.inner + i, split_.inner);
      }
    }
  }

  bool log_ = false;
  AxisSplit split_;
  std::optional<DnnlPrimitive> forward_, backward_;
};

OpSchema SoftmaxSchema(const std::string& name, bool log) {
  OpSchema s;
  s.name = name;
  s.description = log ? "y = x − log Σ exp(x) along axis"
                      : "y = exp(x) / Σ exp(x) along axis";
  s.inputs = {{"x"}};
  s.attrs = {{"axis", AttrType::kInt, AttrValue(int64_t{-1}),
              "the axis to normalise along; negative counts from the end"}};
  s.attrs.push_back(DtypeAttr());
  s.create = [log](const OpConfig& c) { return SoftmaxOp::Create(c, log); };
  return s;
}

REGISTER_OP(SoftmaxSchema("Softmax", /*log=*/false));
REGISTER_OP(SoftmaxSchema("LogSoftmax", /*log=*/true));

}  // namespace
}  // namespace gradserve
