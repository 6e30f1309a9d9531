// MatMul: y = a · b as torch.matmul: a [..., N, K], b [..., K, M] with
// batch dims that broadcast, y [..., N, M]; a 1-d a is a row [1, K] and a
// 1-d b a column [K, 1], their added dim dropped from y. An operand whose
// batch dims are repeated is copied to the full batch (its gradient summed
// back); a b without batch dims multiplies all of a's rows at once. Every
// product here (forward, dA = dY · bᵀ,
// dB = aᵀ · dY) is one batched product of strided views, so transposes cost
// no copies: float32 runs the oneDNN matmul primitive on those views, float64
// the reference loop.
#include <optional>
#include <string>

#include "absl/strings/str_join.h"
#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/broadcast.h"
#include "core/ops/int_math.h"
#include "core/ops/op_util.h"
#include "core/ops/reduction.h"
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
    DispatchNumeric(out.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* l = lhs.data<T>();
      const T* r = rhs.data<T>();
      T* o = out.data<T>();
      for (int64_t b = 0; b < out_.batch; ++b) {
        for (int64_t i = 0; i < out_.rows; ++i) {
          for (int64_t j = 0; j < out_.cols; ++j) {
            T sum = 0;
            for (int64_t k = 0; k < lhs_.cols; ++k) {
              sum =
                  MulAdd(sum, l[lhs_.Offset(b, i, k)], r[rhs_.Offset(b, k, j)]);
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

// torch.matmul's operands as matrices: a 1-d a is a row [1, K], a 1-d b a
// column [K, 1] (the dims added are dropped from y); batch dims broadcast.
struct MatMulShapes {
  Shape given_a, given_b;  // the inputs' shapes
  Shape a, b;              // the operands as matrices, rank >= 2
  Shape batch;             // the broadcast of their batch dims
  Shape y;                 // torch.matmul's result shape
  bool expand_a = false;   // a's batch dims differ from `batch`
  bool expand_b = false;   // b's do (b has batch dims)
  Shape full_a, full_b;    // the operands expanded: batch + [N, K], [K, M]
};

absl::StatusOr<MatMulShapes> MatMulShapesOf(const OpConfig& c) {
  const Shape& a = c.shape(0);
  const Shape& b = c.shape(1);
  if (a.empty() || b.empty()) {
    return c.Error("operands must have rank >= 1, got ", c.Describe(0), " ",
                   ShapeToString(a), " and ", c.Describe(1), " ",
                   ShapeToString(b));
  }
  MatMulShapes s;
  s.given_a = a;
  s.given_b = b;
  s.a = a.size() == 1 ? Shape{1, a[0]} : a;
  s.b = b.size() == 1 ? Shape{b[0], 1} : b;
  const int64_t k = s.a.back();
  if (s.b[s.b.size() - 2] != k) {
    return c.Error(c.Describe(1), " must have ", k,
                   b.size() == 1 ? " elements" : " rows (dim -2)",
                   " to match the last dim of ", c.Describe(0), " ",
                   ShapeToString(a), ", got ", ShapeToString(b));
  }
  const Shape batch_a(s.a.begin(), s.a.end() - 2);
  const Shape batch_b(s.b.begin(), s.b.end() - 2);
  std::optional<Shape> batch = BroadcastShape(batch_a, batch_b);
  if (!batch) {
    return c.Error("the batch dims of ", c.Describe(0), " ", ShapeToString(a),
                   " and ", c.Describe(1), " ", ShapeToString(b),
                   " do not broadcast");
  }
  s.batch = *batch;
  s.y = s.batch;
  if (a.size() > 1) s.y.push_back(s.a[s.a.size() - 2]);
  if (b.size() > 1) s.y.push_back(s.b.back());
  s.full_a = s.batch;
  s.full_a.insert(s.full_a.end(), s.a.end() - 2, s.a.end());
  s.full_b = s.batch;
  s.full_b.insert(s.full_b.end(), s.b.end() - 2, s.b.end());
  // Without batch dims b multiplies all of a's rows at once (no copies).
  s.expand_a = !batch_b.empty() && s.full_a != s.a;
  s.expand_b = !batch_b.empty() && s.full_b != s.b;
  return s;
}

// `x` (of `shape`) repeated to `full` along its broadcast dims.
Tensor Expanded(const Tensor& x, const Shape& shape, const Shape& full) {
  Tensor out = Tensor::Empty(x.dtype(), full);
  DispatchNumeric(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    T* o = out.data<T>();
    ForEachBroadcast(full, shape, shape,
                     [&](int64_t i, int64_t j, int64_t) { o[i] = in[j]; });
  });
  return out;
}

class MatMulOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    // Two int64 operands give int64 (wrapping), as torch.matmul; it refuses
    // an int64 operand against a float one.
    const bool ints =
        c.input(0).dtype == DType::kInt64 && c.input(1).dtype == DType::kInt64;
    if (!ints) {
      RETURN_IF_ERROR(c.ExpectFloat(0));
      RETURN_IF_ERROR(c.ExpectFloat(1));
    }
    ASSIGN_OR_RETURN(MatMulShapes s, MatMulShapesOf(c));
    const bool batched = !Shape(s.b.begin(), s.b.end() - 2).empty();
    // A shared b multiplies all of a's rows at once: a is [1, batch * N, K].
    const int64_t batch = batched ? ElementCount(s.batch) : 1;
    const int64_t rows =
        batched ? s.a[s.a.size() - 2]
                : ElementCount(absl::MakeConstSpan(s.a).first(s.a.size() - 1));
    auto op = std::make_unique<MatMulOp>(s, batch, rows);
    op->outputs_ = {{ints ? DType::kInt64 : c.float_dtype(), s.y}};
    return std::unique_ptr<Op>(std::move(op));
  }

  // a [batch, rows, K] · b [batch, K, M] once a and b are seen as 3-d.
  MatMulOp(const MatMulShapes& s, int64_t batch, int64_t rows)
      : shapes_(s),
        a_(MatrixView::RowMajor(batch, rows, s.a.back())),
        b_(MatrixView::RowMajor(batch, s.a.back(), s.b.back())),
        dy_(MatrixView::RowMajor(batch, rows, s.b.back())),
        forward_(a_, b_),
        grad_a_(dy_, b_.Transposed()),
        grad_b_(a_.Transposed(), dy_) {
    if (s.expand_a) {
      sum_a_ = Reduction(s.full_a, BroadcastDims(s.a, s.full_a));
    }
    if (s.expand_b) {
      sum_b_ = Reduction(s.full_b, BroadcastDims(s.b, s.full_b));
    }
  }

  // The expanded copies of a and b, and their gradients before the sum.
  int64_t ExtraBytes() const override {
    const int64_t dsize = static_cast<int64_t>(DTypeSize(outputs_[0].dtype));
    int64_t bytes = 0;
    if (shapes_.expand_a) bytes += MulSat(2, ElementCount(shapes_.full_a));
    if (shapes_.expand_b) bytes += MulSat(2, ElementCount(shapes_.full_b));
    return MulSat(bytes, dsize);
  }

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
    return forward_.Run(node_, ctx.dnnl(), A(ctx.input(0)), B(ctx.input(1)),
                        ctx.AllocateOutput(0));
  }

  // dA = dY · bᵀ and dB = aᵀ · dY over the expanded operands, summed over
  // the batch dims an operand was repeated along.
  absl::Status Backward(BackwardContext& ctx) const override {
    const Tensor& dy = ctx.grad_output(0);
    const DType dtype = outputs_[0].dtype;
    if (ctx.needs_grad(0)) {
      Tensor da =
          Tensor::Empty(dtype, shapes_.expand_a ? shapes_.full_a : shapes_.a);
      RETURN_IF_ERROR(grad_a_.Run(node_, ctx.dnnl(), dy, B(ctx.input(1)), da));
      ctx.SetGradInput(0, SummedTo(sum_a_, shapes_.expand_a, da, shapes_.a,
                                   shapes_.given_a));
    }
    if (ctx.needs_grad(1)) {
      Tensor db =
          Tensor::Empty(dtype, shapes_.expand_b ? shapes_.full_b : shapes_.b);
      RETURN_IF_ERROR(grad_b_.Run(node_, ctx.dnnl(), A(ctx.input(0)), dy, db));
      ctx.SetGradInput(1, SummedTo(sum_b_, shapes_.expand_b, db, shapes_.b,
                                   shapes_.given_b));
    }
    return absl::OkStatus();
  }

 private:
  Tensor A(const Tensor& a) const {
    return shapes_.expand_a ? Expanded(a, shapes_.a, shapes_.full_a) : a;
  }
  Tensor B(const Tensor& b) const {
    return shapes_.expand_b ? Expanded(b, shapes_.b, shapes_.full_b) : b;
  }
  // The gradient of an operand of `matrix` shape (given as `shape`).
  static Tensor SummedTo(const Reduction& sum, bool expanded, Tensor full,
                         const Shape& matrix, const Shape& shape) {
    if (!expanded) return full.Reshaped(shape);
    Tensor out = Tensor::Empty(full.dtype(), matrix);
    sum.Run(full, out);
    return out.Reshaped(shape);
  }

  MatMulShapes shapes_;
  MatrixView a_, b_, dy_;
  Product forward_, grad_a_, grad_b_;
  Reduction sum_a_, sum_b_;
};

OpSchema MatMulSchema() {
  OpSchema s;
  s.name = "MatMul";
  s.description =
      "y = a · b as torch.matmul: a [..., N, K] or [K], b [..., K, M] or "
      "[K], batch dims broadcast; y [..., N, M] without the dims a 1-d "
      "operand lacks; two int64 operands give int64 (no gradient)";
  s.inputs = {{"a"}, {"b"}};
  s.create = MatMulOp::Create;
  return s;
}

REGISTER_OP(MatMulSchema());

}  // namespace
}  // namespace gradserve
