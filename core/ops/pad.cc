// Pad: torch.nn.functional.pad(x, pads, mode, value). `pads` is torch's
// list: (left, right) of the last dim first, then of the dim before it...;
// negative amounts crop. Modes, index by index as PyTorch 1.13 computes
// them:
//   constant   the new elements hold `value`
//   reflect    mirrored without repeating the edge (reflection_pad: each
//              amount < the dim's size)
//   replicate  the edge repeated (replication_pad)
//   circular   wrapped around (_pad_circular: each amount <= the dim's size,
//              and, where the other side crops, <= what is left of it)
// PyTorch takes reflect and replicate on the last 1-3 dims of a 2-5-d
// input, and circular on all but two leading dims; gradserve takes them on
// any dims. Each output element reads one input element (or `value`), so
// the forward pass gathers by per-dim index maps and the backward pass
// adds dY into those input elements. Any dtype.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/checked_math.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/ops/source_grad.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

enum class PadMode { kConstant, kReflect, kReplicate, kCircular };

// The input index output index j of a padded dim reads, or -1 (the
// constant), for a dim of `size` padded by l and r.
int64_t SourceIndex(PadMode mode, int64_t j, int64_t size, int64_t l,
                    int64_t r) {
  const int64_t i_start = std::max<int64_t>(0, -l);
  const int64_t o_start = std::max<int64_t>(0, l);
  if (mode == PadMode::kConstant) {
    return j - l >= 0 && j - l < size ? j - l : -1;
  }
  if (mode == PadMode::kCircular) {
    const int64_t kept = size - i_start - std::max<int64_t>(0, -r);
    return i_start + ((j - o_start) % kept + kept) % kept;
  }
  int64_t i;  // torch's reflection_pad / replication_pad index
  if (j < l) {
    i = mode == PadMode::kReflect ? 2 * l - j : l;
  } else if (j < size + l) {
    i = j;
  } else {
    i = mode == PadMode::kReflect ? 2 * (size + l - 1) - j : size + l - 1;
  }
  return i - o_start + i_start;
}

absl::StatusOr<PadMode> ModeOf(const OpConfig& c) {
  const std::string& mode = c.attrs().GetString("mode");
  if (mode == "constant") return PadMode::kConstant;
  if (mode == "reflect") return PadMode::kReflect;
  if (mode == "replicate") return PadMode::kReplicate;
  if (mode == "circular") return PadMode::kCircular;
  return c.attrs().Invalid(
      "mode", "\"constant\", \"reflect\", \"replicate\" or \"circular\"");
}

class PadOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    if (IsFloating(c.input(0).dtype)) RETURN_IF_ERROR(c.ExpectFloat(0));
    auto op = std::make_unique<PadOp>();
    ASSIGN_OR_RETURN(op->mode_, ModeOf(c));
    op->value_ = c.attrs().GetFloat("value");
    if (op->mode_ != PadMode::kConstant && op->value_ != 0) {
      return c.Error("attribute 'value' is ", op->value_, " but mode \"",
                     c.attrs().GetString("mode"),
                     "\" takes no value (as in PyTorch)");
    }
    if (c.input(0).dtype == DType::kInt64 && !FitsInt64(op->value_)) {
      return c.attrs().Invalid(
          "value",
          absl::StrCat("a value an int64 holds for int64 ", c.Describe(0)));
    }
    ASSIGN_OR_RETURN(std::vector<int64_t> pads, c.attrs().GetInts("pads"));
    const Shape& x = c.shape(0);
    const size_t rank = x.size();
    if (pads.size() % 2 != 0 || pads.size() > 2 * rank) {
      return c.attrs().Invalid(
          "pads", absl::StrCat("an even number of amounts, at most 2 per dim "
                               "of ",
                               c.Describe(0), " of shape ", ShapeToString(x)));
    }
    op->x_ = x;
    op->left_.assign(rank, 0);
    op->right_.assign(rank, 0);
    Shape y = x;
    for (size_t k = 0; k < pads.size() / 2; ++k) {
      const size_t d = rank - 1 - k;
      op->left_[d] = pads[2 * k];
      op->right_[d] = pads[2 * k + 1];
      ASSIGN_OR_RETURN(y[d], op->PaddedSize(c, d));
    }
    op->outputs_ = {{c.input(0).dtype, y}};
    return std::unique_ptr<Op>(std::move(op));
  }

  // The per-dim index maps.
  int64_t ExtraBytes() const override {
    const Shape& y = outputs_[0].shape;
    if (ElementCount(y) == 0) return 0;
    int64_t dims = 0;
    for (int64_t d : y) dims += d;
    return MulSat(dims, 8);
  }

  SavedValues Saves(const std::vector<bool>&) const override { return {}; }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.AllocateOutput(0);
    auto run = [&](auto zero) {
      using T = decltype(zero);
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      const T value = static_cast<T>(value_);
      ForEachSource(
          [&](int64_t o, int64_t i) { yp[o] = i < 0 ? value : xp[i]; });
    };
    if (x.dtype() == DType::kInt64) {
      run(int64_t{});
    } else {
      DispatchFloat(x.dtype(), run);
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    ctx.SetGradInput(0, AddIntoSources(ctx.grad_output(0), x_,
                                       [&](auto f) { ForEachSource(f); }));
    return absl::OkStatus();
  }

 private:
  // The size of dim d after padding, checked as PyTorch checks it.
  absl::StatusOr<int64_t> PaddedSize(const OpConfig& c, size_t d) const {
    const int64_t size = x_[d], l = left_[d], r = right_[d];
    const std::optional<int64_t> sum = CheckedAdd(l, r);
    const std::optional<int64_t> out =
        sum ? CheckedAdd(size, *sum) : std::nullopt;
    if (!out)
      return c.TooLarge("dim ", d, " padded by ", l, " and ", r,
                        " is larger than int64 holds");
    auto fail = [&](const std::string& why) {
      return c.Error("attribute 'pads' pads dim ", d, " (size ", size, ") of ",
                     c.Describe(0), " by ", l, " and ", r, ": ", why);
    };
    const int64_t least =
        mode_ == PadMode::kConstant || mode_ == PadMode::kCircular ? 0 : 1;
    if (*out < least) {
      return fail(absl::StrCat("the padded size ", *out, " is below ", least));
    }
    if (mode_ == PadMode::kReplicate && size == 0 && *out > 0) {
      return fail("replicate needs a dim of at least 1 element");
    }
    if (mode_ == PadMode::kReflect && (l >= size || r >= size)) {
      return fail("reflect needs amounts below the dim's size");
    }
    if (mode_ == PadMode::kCircular) {
      const int64_t kept =
          size - std::max<int64_t>(0, -l) - std::max<int64_t>(0, -r);
      if (l > size || r > size || (*out > 0 && (l > kept || r > kept))) {
        return fail(
            "circular padding may wrap around the (cropped) dim at most once");
      }
    }
    return *out;
  }

  // Calls f(o, i) for every output element o with the input element i it
  // reads (-1: the constant).
  template <typename F>
  void ForEachSource(F&& f) const {
    const Shape& y = outputs_[0].shape;
    const int rank = static_cast<int>(y.size());
    if (ElementCount(y) == 0) return;
    if (rank == 0) {
      f(0, 0);
      return;
    }
    std::vector<std::vector<int64_t>> maps(rank);
    std::vector<int64_t> strides(rank, 1);
    for (int d = rank - 1; d >= 0; --d) {
      if (d < rank - 1) strides[d] = strides[d + 1] * x_[d + 1];
      maps[d].resize(y[d]);
      for (int64_t j = 0; j < y[d]; ++j) {
        maps[d][j] = SourceIndex(mode_, j, x_[d], left_[d], right_[d]);
      }
    }
    const int64_t inner = y.back();
    const std::vector<int64_t>& last = maps.back();
    std::vector<int64_t> index(rank, 0);
    for (int64_t o = 0; o < ElementCount(y); o += inner) {
      int64_t base = 0;
      for (int d = 0; d < rank - 1 && base >= 0; ++d) {
        const int64_t i = maps[d][index[d]];
        base = i < 0 ? -1 : base + i * strides[d];
      }
      for (int64_t k = 0; k < inner; ++k) {
        f(o + k, base < 0 || last[k] < 0 ? -1 : base + last[k]);
      }
      for (int d = rank - 2; d >= 0; --d) {
        if (++index[d] < y[d]) break;
        index[d] = 0;
      }
    }
  }

  PadMode mode_ = PadMode::kConstant;
  double value_ = 0;
  Shape x_;
  std::vector<int64_t> left_, right_;
};

OpSchema PadSchema() {
  OpSchema s;
  s.name = "Pad";
  s.description =
      "y = x padded (or cropped, by negative amounts) on its last dims, "
      "torch.nn.functional.pad";
  s.inputs = {{"x"}};
  s.attrs = {{"pads", AttrType::kInts, std::nullopt,
              "(left, right) amounts of the last dim, then of the one before "
              "it, ... (torch's order); negative crops"},
             {"mode", AttrType::kString, AttrValue(std::string("constant")),
              "\"constant\", \"reflect\", \"replicate\" or \"circular\""},
             {"value", AttrType::kFloat, AttrValue(0.0),
              "the constant mode's fill value"}};
  s.create = PadOp::Create;
  return s;
}

REGISTER_OP(PadSchema());

}  // namespace
}  // namespace gradserve
