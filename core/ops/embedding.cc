// Embedding(indices, weight) -> y: rows of weight [num, dim] picked by int64
// indices of any shape, y [indices..., dim], as torch.nn.functional.embedding
// (torch 1.13). dL/dweight adds each dL/dy row into its index's row; the
// padding_idx row gets none, and scale_grad_by_freq divides a row's
// gradient by how often its index occurs. Indices have no gradient. An
// index outside [0, num) is INVALID_ARGUMENT, found before anything is
// written. A gather and a scatter-add: plain loops (oneDNN 2.6 has neither).
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

enum Input { kIndices = 0, kWeight = 1 };

class EmbeddingOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(c.ExpectInt64(kIndices));
    RETURN_IF_ERROR(c.ExpectFloat(kWeight));
    RETURN_IF_ERROR(c.ExpectRank(kWeight, 2));
    auto op = std::make_unique<EmbeddingOp>();
    const Shape& w = c.shape(kWeight);
    op->num_ = w[0];
    op->dim_ = w[1];
    RETURN_IF_ERROR(op->ReadPaddingIdx(c));
    const int64_t scale = c.attrs().GetInt("scale_grad_by_freq");
    if (scale != 0 && scale != 1) {
      return c.attrs().Invalid("scale_grad_by_freq", "0 or 1");
    }
    op->scale_grad_by_freq_ = scale == 1;
    op->count_ = c.input(kIndices).num_elements();
    op->error_prefix_ = std::string(c.Error().message());
    op->indices_ = c.Describe(kIndices);
    Shape y = c.shape(kIndices);
    y.push_back(op->dim_);
    op->outputs_ = {{c.float_dtype(), y}};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return 0; }
  int64_t BackwardFlops() const override { return MulSat(count_, dim_); }
  // scale_grad_by_freq's count per row (none for no indices).
  int64_t ExtraBytes() const override {
    return scale_grad_by_freq_ && count_ > 0
               ? MulSat(num_, int64_t{sizeof(int64_t)})
               : 0;
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[kWeight]) s.inputs.push_back(kIndices);
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& indices = ctx.input(kIndices);
    RETURN_IF_ERROR(CheckIndices(indices));
    Tensor& y = ctx.AllocateOutput(0);
    const int64_t* idx = indices.data<int64_t>();
    const size_t row = static_cast<size_t>(dim_) * DTypeSize(y.dtype());
    const char* w = static_cast<const char*>(ctx.input(kWeight).raw_data());
    char* out = static_cast<char*>(y.raw_data());
    for (int64_t i = 0; i < count_; ++i) {
      if (row > 0) std::memcpy(out + i * row, w + idx[i] * row, row);
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(kWeight)) return absl::OkStatus();
    const DType dtype = outputs_[0].dtype;
    Tensor dw = Tensor::Zeros(dtype, {num_, dim_});
    const int64_t* idx = ctx.input(kIndices).data<int64_t>();
    std::vector<int64_t> freq;
    if (scale_grad_by_freq_ && count_ > 0) {
      freq.assign(static_cast<size_t>(num_), 0);
      for (int64_t i = 0; i < count_; ++i) ++freq[idx[i]];
    }
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T* dy = ctx.grad_output(0).template data<T>();
      T* d = dw.data<T>();
      for (int64_t i = 0; i < count_; ++i) {
        if (idx[i] == padding_idx_) continue;
        const T scale = static_cast<T>(
            freq.empty() ? 1.0 : 1.0 / static_cast<double>(freq[idx[i]]));
        T* to = d + idx[i] * dim_;
        const T* from = dy + i * dim_;
        for (int64_t k = 0; k < dim_; ++k) to[k] += from[k] * scale;
      }
    });
    ctx.SetGradInput(kWeight, std::move(dw));
    return absl::OkStatus();
  }

 private:
  // "none", or a row in [-num, num) (negative counts from the end), as
  // torch's padding_idx.
  absl::Status ReadPaddingIdx(const OpConfig& c) {
    const Attributes& a = c.attrs();
    if (a.IsString("padding_idx")) {
      if (a.GetString("padding_idx") != "none") {
        return a.Invalid("padding_idx", "\"none\" or an int");
      }
      return absl::OkStatus();
    }
    const int64_t p = a.GetInt("padding_idx");
    if (p < -num_ || p >= num_) {
      return a.Invalid("padding_idx",
                       absl::StrCat("\"none\" or in [-num, num) = [", -num_,
                                    ", ", num_, ") for ", c.Describe(kWeight),
                                    " ", ShapeToString(c.shape(kWeight))));
    }
    padding_idx_ = p < 0 ? p + num_ : p;
    return absl::OkStatus();
  }

  absl::Status CheckIndices(const Tensor& indices) const {
    const int64_t* idx = indices.data<int64_t>();
    for (int64_t i = 0; i < count_; ++i) {
      if (idx[i] < 0 || idx[i] >= num_) {
        return absl::InvalidArgumentError(absl::StrCat(
            error_prefix_, indices_, " has index ", idx[i], " at flat index ",
            i, ", expected an index in [0, ", num_, ") (weight rows)"));
      }
    }
    return absl::OkStatus();
  }

  int64_t num_ = 0, dim_ = 0, count_ = 0;
  int64_t padding_idx_ = std::numeric_limits<int64_t>::min();  // none
  bool scale_grad_by_freq_ = false;
  std::string error_prefix_, indices_;
};

OpSchema EmbeddingSchema() {
  OpSchema s;
  s.name = "Embedding";
  s.description =
      "rows of weight [num, dim] picked by int64 indices of any shape: y "
      "[indices..., dim]; dL/dweight only";
  s.inputs = {{"indices"}, {"weight"}};
  s.attrs = {{"padding_idx", AttrType::kInt, AttrValue(std::string("none")),
              "a row in [-num, num) that gets no gradient, or \"none\"",
              /*or_string=*/true},
             {"scale_grad_by_freq", AttrType::kInt, AttrValue(int64_t{0}),
              "1: a row's gradient divided by its index's count in indices"}};
  s.create = EmbeddingOp::Create;
  return s;
}

REGISTER_OP(EmbeddingSchema());

}  // namespace
}  // namespace gradserve
