// Split: torch.split(x, split_size_or_sections, dim). One int cuts chunks of
// that size along dim (the last one smaller); a list gives each chunk's
// size (summing to the dim). The node defines one output per chunk, in
// order. The outputs are copies (any dtype); dL/dx joins the dY of every
// chunk (zeros for a chunk nothing flows into).
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/ops/tensor_op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

// The chunk sizes torch.split gives a dim of `n`.
absl::StatusOr<std::vector<int64_t>> ChunkSizes(const OpConfig& c, int64_t n) {
  const char* name = "split_size_or_sections";
  ASSIGN_OR_RETURN(std::vector<int64_t> v, c.attrs().GetInts(name));
  if (!c.attrs().IsInt(name)) {
    int64_t total = 0;
    for (int64_t s : v) {
      if (s < 0) return c.attrs().Invalid(name, "sizes >= 0");
      // Saturated (total never exceeds it): a size near 2^63 must not wrap.
      total = s > kMaxTensorElements - total ? kMaxTensorElements : total + s;
    }
    if (total != n) {
      return c.Error("attribute '", name, "' ", ShapeToString(v),
                     " must sum to the dim's size ", n, ", got ", total);
    }
    return v;
  }
  const int64_t size = v[0];
  if (size < 0 || (size == 0 && n > 0)) {
    return c.attrs().Invalid(
        name, absl::StrCat("a chunk size >= 1 (0 only for a dim of size 0; "
                           "the dim has size ",
                           n, ")"));
  }
  // Counted before the list is built: a size of 1 on a long dim would
  // list a chunk per element.
  const int64_t chunks = n == 0 ? 1 : (n - 1) / size + 1;
  if (chunks != c.num_outputs()) {
    return c.Error("splitting a dim of size ", n, " into chunks of ", size,
                   " gives ", chunks, " chunks, but the node defines ",
                   c.num_outputs(), " outputs");
  }
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < n; start += size) {
    sizes.push_back(std::min(size, n - start));
  }
  if (sizes.empty()) sizes.push_back(0);
  return sizes;
}

class SplitOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    const TensorMeta& x = c.input(0);
    if (IsFloating(x.dtype)) RETURN_IF_ERROR(c.ExpectFloat(0));
    const int rank = static_cast<int>(x.shape.size());
    if (rank == 0) {
      return c.Error(c.Describe(0),
                     " must have rank >= 1 (as torch.split), "
                     "got shape []");
    }
    ASSIGN_OR_RETURN(int dim,
                     c.NormalizeAxis("dim", c.attrs().GetInt("dim"), rank));
    ASSIGN_OR_RETURN(std::vector<int64_t> sizes, ChunkSizes(c, x.shape[dim]));
    if (static_cast<int>(sizes.size()) != c.num_outputs()) {
      return c.Error("splitting dim ", dim, " of ", c.Describe(0), " of shape ",
                     ShapeToString(x.shape), " gives ", sizes.size(),
                     " chunks ", ShapeToString(sizes),
                     ", but the node defines ", c.num_outputs(), " outputs");
    }
    auto op = std::make_unique<SplitOp>();
    op->split_ = SplitAtAxis(x.shape, dim);
    op->x_ = x;
    int64_t offset = 0;
    for (int64_t size : sizes) {
      Shape shape = x.shape;
      shape[dim] = size;
      op->outputs_.push_back({x.dtype, shape});
      op->offsets_.push_back(offset);
      op->sizes_.push_back(size);
      offset += size;
    }
    return std::unique_ptr<Op>(std::move(op));
  }

  SavedValues Saves(const std::vector<bool>&) const override { return {}; }

  absl::Status Forward(ForwardContext& ctx) const override {
    const auto* src = static_cast<const uint8_t*>(ctx.input(0).raw_data());
    for (size_t k = 0; k < sizes_.size(); ++k) {
      Tensor& y = ctx.AllocateOutput(static_cast<int>(k));
      CopyBlocks(split_.outer, Bytes(sizes_[k]), src + Bytes(offsets_[k]),
                 Bytes(split_.dim), static_cast<uint8_t*>(y.raw_data()),
                 Bytes(sizes_[k]));
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    Tensor dx = Tensor::Zeros(x_);
    auto* dst = static_cast<uint8_t*>(dx.raw_data());
    for (size_t k = 0; k < sizes_.size(); ++k) {
      if (!ctx.has_grad_output(static_cast<int>(k))) continue;
      const Tensor& dy = ctx.grad_output(static_cast<int>(k));
      CopyBlocks(split_.outer, Bytes(sizes_[k]),
                 static_cast<const uint8_t*>(dy.raw_data()), Bytes(sizes_[k]),
                 dst + Bytes(offsets_[k]), Bytes(split_.dim));
    }
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  // Bytes of `size` rows of the split dim (times the inner dims).
  size_t Bytes(int64_t size) const {
    return static_cast<size_t>(size * split_.inner) * DTypeSize(x_.dtype);
  }

  TensorMeta x_;
  AxisSplit split_;
  std::vector<int64_t> offsets_, sizes_;
};

OpSchema SplitSchema() {
  OpSchema s;
  s.name = "Split";
  s.description =
      "y0, y1, ... = x cut along dim, torch.split; one output per chunk";
  s.inputs = {{"x"}};
  s.outputs = {"y"};
  s.variadic_outputs = true;
  s.attrs = {{"split_size_or_sections", AttrType::kInts, std::nullopt,
              "one int: the chunk size (the last chunk smaller); ints: each "
              "chunk's size, summing to the dim"},
             {"dim", AttrType::kInt, AttrValue(int64_t{0}),
              "the dim to cut; negative counts from the end"}};
  s.create = SplitOp::Create;
  return s;
}

REGISTER_OP(SplitSchema());

}  // namespace
}  // namespace gradserve
