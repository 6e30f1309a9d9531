// Embedding(indices, weight) -> y: rows of weight [num, dim] picked by int64
// indices of any shape, y [indices..., dim], as torch.nn.functional.embedding
// (torch 1.13). dL/dweight adds each dL/dy row into its index's row; the
// padding_idx row gets none, and scale_grad_by_freq divides a row's
// gradient by how often its index occurs. Indices have no gradient. An
// index outside [0, num) is INVALID_ARGUMENT, found before anything is
// written. A gather and a scatter-add: plain loops (oneDNN 2.6 has neither).
//
// max_norm: torch renormalises, in place and without autograd, every row
// the indices look up whose norm_type-norm exceeds max_norm (scaled by
// max_norm / (norm + 1e-7), embedding_renorm_), then gathers. gradserve
// never writes an input: y gets the renormalised rows, and dL/dweight is
// the scatter-add above, as torch's (the renormalisation is not
// differentiated).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
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
    RETURN_IF_ERROR(op->ReadMaxNorm(c));
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
  // scale_grad_by_freq's count per row, max_norm's scale per row (none for
  // no indices).
  int64_t ExtraBytes() const override {
    if (count_ == 0) return 0;
    return MulSat(num_, int64_t{sizeof(int64_t)}) *
           (int64_t{scale_grad_by_freq_} + int64_t{max_norm_.has_value()});
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
    if (max_norm_) {
      Renormalised(ctx.input(kWeight), idx, y);
      return absl::OkStatus();
    }
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

  // max_norm "none" (default) or a float; norm_type a float (2), "inf" or
  // "-inf".
  absl::Status ReadMaxNorm(const OpConfig& c) {
    const Attributes& a = c.attrs();
    if (!a.IsString("norm_type")) {
      norm_type_ = a.GetFloat("norm_type");
    } else if (a.GetString("norm_type") == "inf") {
      norm_type_ = std::numeric_limits<double>::infinity();
    } else if (a.GetString("norm_type") == "-inf") {
      norm_type_ = -std::numeric_limits<double>::infinity();
    } else {
      return a.Invalid("norm_type", "a float, \"inf\" or \"-inf\"");
    }
    if (!a.IsString("max_norm")) {
      max_norm_ = a.GetFloat("max_norm");
      return absl::OkStatus();
    }
    if (a.GetString("max_norm") != "none") {
      return a.Invalid("max_norm", "\"none\" or a float");
    }
    return absl::OkStatus();
  }

  // torch.norm(row, p) in double: the largest |x| for p = inf, the smallest
  // for -inf, the count of non-zeros for 0.
  double RowNorm(const double* x) const {
    const double p = norm_type_;
    double acc = std::isinf(p) ? std::abs(x[0]) : 0;
    for (int64_t k = 0; k < dim_; ++k) {
      const double v = std::abs(x[k]);
      if (std::isinf(p)) {
        acc = p > 0 ? std::max(acc, v) : std::min(acc, v);
      } else if (p == 0) {
        acc += v != 0;
      } else {
        acc += std::pow(v, p);
      }
    }
    if (std::isinf(p) || p == 0) return acc;
    return std::pow(acc, 1 / p);
  }

  // The scale of row r: max_norm / (norm + 1e-7) when its norm exceeds
  // max_norm, else 1 (embedding_renorm_).
  double RowScale(const Tensor& weight, int64_t r) const {
    std::vector<double> x(static_cast<size_t>(dim_));
    DispatchFloat(weight.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* w = weight.template data<T>() + r * dim_;
      for (int64_t k = 0; k < dim_; ++k) x[k] = w[k];
    });
    if (dim_ == 0) return 1;
    const double norm = RowNorm(x.data());
    return norm > *max_norm_ ? *max_norm_ / (norm + 1e-7) : 1;
  }

  // y's rows as torch gathers them after embedding_renorm_: row * scale in
  // the weight's dtype (torch's in-place `row *= scale`).
  void Renormalised(const Tensor& weight, const int64_t* idx, Tensor& y) const {
    std::vector<double> scale(static_cast<size_t>(num_), -1);
    for (int64_t i = 0; i < count_; ++i) {
      if (scale[idx[i]] < 0) scale[idx[i]] = RowScale(weight, idx[i]);
    }
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* w = weight.template data<T>();
      T* out = y.template data<T>();
      for (int64_t i = 0; i < count_; ++i) {
        const T* from = w + idx[i] * dim_;
        const bool scaled = scale[idx[i]] != 1;
        const T s = static_cast<T>(scale[idx[i]]);
        for (int64_t k = 0; k < dim_; ++k) {
          out[i * dim_ + k] = scaled ? from[k] * s : from[k];
        }
      }
    });
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
  std::optional<double> max_norm_;  // none: no renormalisation
  double norm_type_ = 2;
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
              "1: a row's gradient divided by its index's count in indices"},
             {"max_norm", AttrType::kFloat, AttrValue(std::string("none")),
              "a float: each looked-up row whose norm_type-norm exceeds it is "
              "scaled by max_norm / (norm + 1e-7) before the lookup, as "
              "torch's in-place renorm (y gets the scaled rows; dL/dweight is "
              "not differentiated through the scaling, as torch's); \"none\""
              " = no renorm",
              /*or_string=*/true},
             {"norm_type", AttrType::kFloat, AttrValue(2.0),
              "the p of max_norm's p-norm: a float, \"inf\" or \"-inf\"",
              /*or_string=*/true}};
  s.create = EmbeddingOp::Create;
  return s;
}

REGISTER_OP(EmbeddingSchema());

}  // namespace
}  // namespace gradserve
