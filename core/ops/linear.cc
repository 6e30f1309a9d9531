// Linear: y = x · weightᵀ + bias, x [..., in], weight [out, in], bias [out].
// float32 runs oneDNN inner product (forward, backward data, backward
// weights); float64 runs the reference loops.
#include <optional>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/int_math.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

using dnnl::inner_product_backward_data;
using dnnl::inner_product_backward_weights;
using dnnl::inner_product_forward;
using dnnl::prop_kind;

class LinearOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    // x, weight and bias all int64 give int64 (wrapping), as F.linear;
    // torch refuses int64 against float.
    const bool ints = AllInt64(c);
    if (!ints) {
      RETURN_IF_ERROR(c.ExpectFloat(0));
      RETURN_IF_ERROR(c.ExpectFloat(1));
    }
    if (c.shape(0).empty()) {
      return c.Error(c.Describe(0), " must have rank >= 1 ([..., in]), got ",
                     ShapeToString(c.shape(0)));
    }
    RETURN_IF_ERROR(c.ExpectRank(1, 2));
    const int64_t in = c.shape(0).back();
    const int64_t out = c.shape(1)[0];
    if (c.shape(1)[1] != in) {
      return c.Error(c.Describe(1), " must be [out, ", in,
                     "] to match x's last dim, got ",
                     ShapeToString(c.shape(1)));
    }
    if (c.has_input(2)) {
      if (!ints) RETURN_IF_ERROR(c.ExpectFloat(2));
      RETURN_IF_ERROR(c.ExpectShape(2, {out}));
    }
    auto op = std::make_unique<LinearOp>();
    op->batch_ = ElementCount(
        absl::MakeConstSpan(c.shape(0)).first(c.shape(0).size() - 1));
    op->in_ = in;
    op->out_ = out;
    op->has_bias_ = c.has_input(2);
    Shape y = c.shape(0);
    y.back() = out;
    op->outputs_ = {{ints ? DType::kInt64 : c.float_dtype(), y}};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override {
    return MulSat(MulSat(2 * batch_, in_), out_);
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[1]) s.inputs.push_back(0);  // dW = dYᵀ · x
    if (needs_grad[0]) s.inputs.push_back(1);  // dx = dY · W
    return s;
  }

  absl::Status Prepare(const PrepareInfo& info) override {
    if (outputs_[0].dtype != DType::kFloat32 || batch_ == 0 || in_ == 0 ||
        out_ == 0) {
      return absl::OkStatus();  // reference loops
    }
    return CatchDnnl(node_, [&] {
      auto& eng = CpuEngine();
      auto src = PlainDesc({batch_, in_});
      auto wei = PlainDesc({out_, in_});
      auto bia = PlainDesc({out_});
      auto dst = PlainDesc({batch_, out_});
      auto kind = info.backward_will_run ? prop_kind::forward_training
                                         : prop_kind::forward_inference;
      auto fwd_desc =
          has_bias_ ? inner_product_forward::desc(kind, src, wei, bia, dst)
                    : inner_product_forward::desc(kind, src, wei, dst);
      inner_product_forward::primitive_desc fwd_pd(fwd_desc, DefaultAttr(),
                                                   eng);
      forward_ = MakePrimitive<inner_product_forward>(fwd_pd);
      if (info.backward_will_run && info.needs_grad[0]) {
        inner_product_backward_data::primitive_desc pd(
            inner_product_backward_data::desc(src, wei, dst), DefaultAttr(),
            eng, fwd_pd);
        backward_data_ = MakePrimitive<inner_product_backward_data>(pd);
      }
      // dW needs x; db alone is a sum of dY (BiasGradient), so the
      // backward-weights primitive runs only for dW, writing db beside it
      // when that is wanted too.
      if (info.backward_will_run && info.needs_grad[1]) {
        backward_bias_ = has_bias_ && info.needs_grad[2];
        auto desc =
            backward_bias_
                ? inner_product_backward_weights::desc(src, wei, bia, dst)
                : inner_product_backward_weights::desc(src, wei, dst);
        inner_product_backward_weights::primitive_desc pd(desc, DefaultAttr(),
                                                          eng, fwd_pd);
        backward_weights_ = MakePrimitive<inner_product_backward_weights>(pd);
      }
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    Tensor& y = ctx.AllocateOutput(0);
    const Tensor& x = ctx.input(0);
    const Tensor& w = ctx.input(1);
    if (forward_) {
      DnnlArgs args = {
          {DNNL_ARG_SRC, WrapTensor(PlainDesc({batch_, in_}), x)},
          {DNNL_ARG_WEIGHTS, WrapTensor(PlainDesc({out_, in_}), w)},
          {DNNL_ARG_DST, WrapTensor(PlainDesc({batch_, out_}), y)}};
      if (has_bias_) {
        args[DNNL_ARG_BIAS] = WrapTensor(PlainDesc({out_}), ctx.input(2));
      }
      return ExecuteDnnl(ctx.dnnl(), node_, *forward_, args);
    }
    DispatchNumeric(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xp = x.data<T>();
      const T* wp = w.data<T>();
      const T* bp = has_bias_ ? ctx.input(2).data<T>() : nullptr;
      T* yp = y.data<T>();
      for (int64_t n = 0; n < batch_; ++n) {
        for (int64_t o = 0; o < out_; ++o) {
          T sum = bp ? bp[o] : T(0);
          for (int64_t i = 0; i < in_; ++i)
            sum = MulAdd(sum, xp[n * in_ + i], wp[o * in_ + i]);
          yp[n * out_ + o] = sum;
        }
      }
    });
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const DType dtype = outputs_[0].dtype;
    Tensor dx =
        ctx.needs_grad(0) ? Tensor::Empty(dtype, InputShape()) : Tensor();
    Tensor dw =
        ctx.needs_grad(1) ? Tensor::Empty(dtype, {out_, in_}) : Tensor();
    Tensor db = has_bias_ && ctx.needs_grad(2) ? Tensor::Empty(dtype, {out_})
                                               : Tensor();
    if (forward_) {
      RETURN_IF_ERROR(BackwardDnnl(ctx, dx, dw, db));
    } else {
      DispatchFloat(dtype, [&](auto zero) {
        BackwardLoops<decltype(zero)>(ctx, dx, dw);
      });
    }
    // Unless backward-weights wrote it, db is dY summed over the batch.
    if (db.defined() && !(forward_ && dw.defined())) {
      DispatchFloat(dtype, [&](auto zero) {
        BiasGradient<decltype(zero)>(ctx.grad_output(0), db);
      });
    }
    if (dx.defined()) ctx.SetGradInput(0, std::move(dx));
    if (dw.defined()) ctx.SetGradInput(1, std::move(dw));
    if (db.defined()) ctx.SetGradInput(2, std::move(db));
    return absl::OkStatus();
  }

 private:
  Shape InputShape() const {
    Shape s = outputs_[0].shape;
    s.back() = in_;
    return s;
  }

  // dx and dW (where defined) on oneDNN; db too when backward-weights
  // computes it with dW.
  absl::Status BackwardDnnl(BackwardContext& ctx, Tensor& dx, Tensor& dw,
                            Tensor& db) const {
    return CatchDnnl(node_, [&] {
      auto dy_mem = WrapTensor(PlainDesc({batch_, out_}), ctx.grad_output(0));
      if (dx.defined()) {
        ctx.dnnl().Execute(
            *backward_data_,
            {{DNNL_ARG_DIFF_DST, dy_mem},
             {DNNL_ARG_WEIGHTS,
              WrapTensor(PlainDesc({out_, in_}), ctx.input(1))},
             {DNNL_ARG_DIFF_SRC, WrapTensor(PlainDesc({batch_, in_}), dx)}});
      }
      if (dw.defined()) {
        DnnlArgs args = {
            {DNNL_ARG_DIFF_DST, dy_mem},
            {DNNL_ARG_SRC, WrapTensor(PlainDesc({batch_, in_}), ctx.input(0))},
            {DNNL_ARG_DIFF_WEIGHTS, WrapTensor(PlainDesc({out_, in_}), dw)}};
        if (backward_bias_) {
          args[DNNL_ARG_DIFF_BIAS] = WrapTensor(PlainDesc({out_}), db);
        }
        ctx.dnnl().Execute(*backward_weights_, args);
      }
      return absl::OkStatus();
    });
  }

  // dx = dY · W and dW = dYᵀ · x, where defined.
  template <typename T>
  void BackwardLoops(const BackwardContext& ctx, Tensor& dx, Tensor& dw) const {
    const T* g = ctx.grad_output(0).data<T>();
    if (dx.defined()) {
      Product<T>({batch_, in_, out_}, {g, out_, 1},
                 {ctx.input(1).data<T>(), in_, 1}, dx.data<T>());
    }
    if (dw.defined()) {
      Product<T>({out_, in_, batch_}, {g, 1, out_},
                 {ctx.input(0).data<T>(), in_, 1}, dw.data<T>());
    }
  }

  // A strided matrix: element (i, j) at data[i * row + j * col].
  template <typename T>
  struct Strided {
    const T* data;
    int64_t row, col;
    T at(int64_t i, int64_t j) const { return data[i * row + j * col]; }
  };
  struct Dims {
    int64_t rows, cols, inner;
  };

  // out (row-major [rows, cols]) = a [rows, inner] · b [inner, cols].
  template <typename T>
  static void Product(Dims d, Strided<T> a, Strided<T> b, T* out) {
    for (int64_t i = 0; i < d.rows; ++i) {
      for (int64_t j = 0; j < d.cols; ++j) {
        T sum = 0;
        for (int64_t k = 0; k < d.inner; ++k) sum += a.at(i, k) * b.at(k, j);
        out[i * d.cols + j] = sum;
      }
    }
  }

  template <typename T>
  void BiasGradient(const Tensor& dy, Tensor& db) const {
    const T* g = dy.data<T>();
    T* p = db.data<T>();
    for (int64_t o = 0; o < out_; ++o) {
      T sum = 0;
      for (int64_t n = 0; n < batch_; ++n) sum += g[n * out_ + o];
      p[o] = sum;
    }
  }

  int64_t batch_ = 0, in_ = 0, out_ = 0;
  bool has_bias_ = false;
  bool backward_bias_ = false;  // backward-weights also writes db
  std::optional<DnnlPrimitive> forward_, backward_data_, backward_weights_;
};

OpSchema LinearSchema() {
  OpSchema s;
  s.name = "Linear";
  s.description =
      "y = x · weightᵀ + bias; x [..., in], weight [out, in], bias [out]; all "
      "int64 gives int64 (no gradient)";
  s.inputs = {{"x"}, {"weight"}, {"bias", /*optional=*/true}};
  s.create = LinearOp::Create;
  return s;
}

REGISTER_OP(LinearSchema());

}  // namespace
}  // namespace gradserve
