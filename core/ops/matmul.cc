// MatMul: y = a · b, a [..., N, K], b [K, M] or [..., K, M] with a's batch
// dims; y [..., N, M]. Every product here (forward, dA = dY · bᵀ,
// dB = aᵀ · dY) is one batched product of strided views, so transposes cost
// no copies: float32 runs the oneDNN matmul primitive on those views, float64
// the reference loop.
#include <optional>
#include <string>

#include "absl/strings/str_join.h"
#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

// A [batch, rows, cols] matrix view over row-major storage, by strides.
struct MatrixView {
  int64_t batch, rows, cols;
  int64_t batch_stride, row_stride, col_stride;

  static MatrixView RowMajor(int64_t batch, int64_t rows, int64_t cols) {
    return {batch, rows, cols, rows * cols, cols, 1};
  }
  MatrixView Transposed() const {
    return {batch, cols, rows, batch_stride, col_stride, row_stride};
  }
  int64_t Offset(int64_t b, int64_t r, int64_t c) const {
    return b * batch_stride + r * row_stride + c * col_stride;
  }
  dnnl::memory::desc Desc() const {
    return dnnl::memory::desc({batch, rows, cols}, dnnl::memory::data_type::f32,
                              {batch_stride, row_stride, col_stride});
  }
};

// out = lhs · rhs per batch; out is row-major [batch, lhs.rows, rhs.cols].
class Product {
 public:
  Product(MatrixView lhs, MatrixView rhs)
      : lhs_(lhs),
        rhs_(rhs),
        out_(MatrixView::RowMajor(lhs.batch, lhs.rows, rhs.cols)) {}

  bool empty() const {
    return lhs_.batch == 0 || lhs_.rows == 0 || lhs_.cols == 0 ||
           rhs_.cols == 0;
  }

  // Builds the oneDNN primitive; an empty product stays on the loop.
  void Build() {
    if (empty()) return;
    dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(lhs_.Desc(), rhs_.Desc(), out_.Desc()),
        DefaultAttr(), CpuEngine());
    primitive_ = MakePrimitive<dnnl::matmul>(pd);
  }

  absl::Status Run(absl::string_view node, DnnlRunner& dnnl, const Tensor& lhs,
                   const Tensor& rhs, Tensor& out) const {
    if (primitive_) {
      return ExecuteDnnl(dnnl, node, *primitive_,
                         {{DNNL_ARG_SRC, WrapTensor(lhs_.Desc(), lhs)},
                          {DNNL_ARG_WEIGHTS, WrapTensor(rhs_.Desc(), rhs)},
                          {DNNL_ARG_DST, WrapTensor(out_.Desc(), out)}});
    }
    DispatchFloat(out.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* l = lhs.data<T>();
      const T* r = rhs.data<T>();
      T* o = out.data<T>();
      for (int64_t b = 0; b < out_.batch; ++b) {
        for (int64_t i = 0; i < out_.rows; ++i) {
          for (int64_t j = 0; j < out_.cols; ++j) {
            T sum = 0;
            for (int64_t k = 0; k < lhs_.cols; ++k) {
              sum += l[lhs_.Offset(b, i, k)] * r[rhs_.Offset(b, k, j)];
            }
            o[out_.Offset(b, i, j)] = sum;
          }
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  MatrixView lhs_, rhs_, out_;
  std::optional<DnnlPrimitive> primitive_;
};

class MatMulOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(c.ExpectFloat(0));
    RETURN_IF_ERROR(c.ExpectFloat(1));
    const Shape& a = c.shape(0);
    const Shape& b = c.shape(1);
    if (a.size() < 2) {
      return c.Error(c.Describe(0), " must have rank >= 2 ([..., N, K]), got ",
                     ShapeToString(a));
    }
    const int64_t k = a.back();
    Shape batch_dims(a.begin(), a.end() - 2);
    const bool batched_b = b.size() > 2;
    if (b.size() < 2 || b[b.size() - 2] != k ||
        (batched_b && Shape(b.begin(), b.end() - 2) != batch_dims)) {
      std::string expected = absl::StrCat("[", k, ", M]");
      if (!batch_dims.empty()) {
        absl::StrAppend(&expected, " or [", absl::StrJoin(batch_dims, ", "),
                        ", ", k, ", M]");
      }
      return c.Error(c.Describe(1), " must be ", expected, " to match ",
                     c.Describe(0), " ", ShapeToString(a), ", got ",
                     ShapeToString(b));
    }
    const int64_t n = a[a.size() - 2];
    const int64_t batch = ElementCount(batch_dims);
    // A shared b multiplies all of a's rows at once: a is [1, batch * N, K].
    const int64_t rows =
        ElementCount(absl::MakeConstSpan(a).first(a.size() - 1));
    auto op = batched_b ? std::make_unique<MatMulOp>(a, b, batch, n)
                        : std::make_unique<MatMulOp>(a, b, 1, rows);
    Shape y = a;
    y.back() = b.back();
    op->outputs_ = {{c.float_dtype(), y}};
    return std::unique_ptr<Op>(std::move(op));
  }

  // a [batch, rows, K] · b [batch, K, M] once a and b are seen as 3-d.
  MatMulOp(Shape a_shape, Shape b_shape, int64_t batch, int64_t rows)
      : a_shape_(std::move(a_shape)),
        b_shape_(std::move(b_shape)),
        a_(MatrixView::RowMajor(batch, rows, a_shape_.back())),
        b_(MatrixView::RowMajor(batch, a_shape_.back(), b_shape_.back())),
        dy_(MatrixView::RowMajor(batch, rows, b_shape_.back())),
        forward_(a_, b_),
        grad_a_(dy_, b_.Transposed()),
        grad_b_(a_.Transposed(), dy_) {}

  int64_t ForwardFlops() const override {
    return MulSat(MulSat(MulSat(MulSat(2, a_.batch), a_.rows), a_.cols),
                  b_.cols);
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[1]) s.inputs.push_back(0);  // dB = aᵀ · dY
    if (needs_grad[0]) s.inputs.push_back(1);  // dA = dY · bᵀ
    return s;
  }

  absl::Status Prepare(const PrepareInfo& info) override {
    if (outputs_[0].dtype != DType::kFloat32) return absl::OkStatus();
    return CatchDnnl(node_, [&] {
      forward_.Build();
      if (info.backward_will_run && info.needs_grad[0]) grad_a_.Build();
      if (info.backward_will_run && info.needs_grad[1]) grad_b_.Build();
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    return forward_.Run(node_, ctx.dnnl(), ctx.input(0), ctx.input(1),
                        ctx.AllocateOutput(0));
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const Tensor& dy = ctx.grad_output(0);
    const DType dtype = outputs_[0].dtype;
    if (ctx.needs_grad(0)) {
      Tensor da = Tensor::Empty(dtype, a_shape_);
      RETURN_IF_ERROR(grad_a_.Run(node_, ctx.dnnl(), dy, ctx.input(1), da));
      ctx.SetGradInput(0, std::move(da));
    }
    if (ctx.needs_grad(1)) {
      Tensor db = Tensor::Empty(dtype, b_shape_);
      RETURN_IF_ERROR(grad_b_.Run(node_, ctx.dnnl(), ctx.input(0), dy, db));
      ctx.SetGradInput(1, std::move(db));
    }
    return absl::OkStatus();
  }

 private:
  Shape a_shape_, b_shape_;
  MatrixView a_, b_, dy_;
  Product forward_, grad_a_, grad_b_;
};

OpSchema MatMulSchema() {
  OpSchema s;
  s.name = "MatMul";
  s.description =
      "y = a · b; a [..., N, K], b [K, M] or [..., K, M] with a's batch "
      "dims; y [..., N, M]";
  s.inputs = {{"a"}, {"b"}};
  s.create = MatMulOp::Create;
  return s;
}

REGISTER_OP(MatMulSchema());

}  // namespace
}  // namespace gradserve
