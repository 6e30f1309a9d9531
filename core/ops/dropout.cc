// Dropout(x, mask?) -> y (, mask): in TRAIN, y = x·mask/(1 - p) with
// mask[i] in {0, 1} kept with probability 1 - p; in EVAL, y = x (and the
// mask is all ones). An explicit mask input replaces the draw. p = 1 drops
// everything (y = 0), as in PyTorch.
//
// Dropout2d is the same channel-wise (torch's feature dropout): x [N, C,
// ...] of rank >= 2, its mask [N, C, 1, ...] of x's rank, one draw per
// channel of each sample, broadcast over the spatial dims.
//
// The draw is counter-based: element i keeps when a hash of (node seed, i)
// maps to a uniform number >= p. The node seed mixes the request's seed with
// the node's name, so a request seed gives the same masks whatever the
// thread count or scheduling, and different nodes different masks. oneDNN
// 2.6 has no dropout primitive: both passes are plain loops.
#include <algorithm>

#include "absl/types/span.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

enum Input { kX = 0, kMask = 1 };

// A uniform number in [0, 1) for element i of the stream `seed`.
double Uniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

class DropoutOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    bool channelwise) {
    RETURN_IF_ERROR(c.ExpectFloat(kX));
    Shape mask = c.shape(kX);
    if (channelwise && mask.size() < 2) {
      return c.Error(c.Describe(kX),
                     " must be [N, C, ...] (rank >= 2, as "
                     "torch's feature dropout), got ",
                     ShapeToString(mask));
    }
    auto op = std::make_unique<DropoutOp>();
    if (channelwise) {
      op->plane_ = ElementCount(absl::MakeConstSpan(mask).subspan(2));
      std::fill(mask.begin() + 2, mask.end(), 1);
    }
    if (c.has_input(kMask)) {
      RETURN_IF_ERROR(c.ExpectFloat(kMask));
      RETURN_IF_ERROR(c.ExpectShape(kMask, mask));
    }
    op->p_ = c.attrs().GetFloat("p");
    if (!(op->p_ >= 0 && op->p_ <= 1))
      return c.attrs().Invalid("p", "in [0, 1]");
    op->train_ = c.mode() == Mode::kTrain;
    op->given_mask_ = c.has_input(kMask);
    op->num_outputs_ = c.num_outputs();
    op->outputs_ = {c.input(kX), {c.float_dtype(), mask}};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return outputs_[0].num_elements(); }
  // A drawn mask the node does not output (kept for Backward).
  int64_t ExtraBytes() const override {
    return train_ && !given_mask_ && num_outputs_ == 1 ? outputs_[1].num_bytes()
                                                       : 0;
  }
  int64_t BackwardFlops() const override { return outputs_[0].num_elements(); }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (!train_) return s;
    if (given_mask_) s.inputs.push_back(kMask);  // a drawn mask is Save()d
    if (needs_grad.size() > kMask && needs_grad[kMask]) s.inputs.push_back(kX);
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& x = ctx.input(kX);
    if (!train_) {
      ctx.SetOutput(0, x);  // the identity, as a view
      if (ctx.num_outputs() > 1) {
        Tensor& mask = ctx.AllocateOutput(1);
        DispatchFloat(mask.dtype(), [&](auto zero) {
          using T = decltype(zero);
          std::fill_n(mask.data<T>(), mask.num_elements(), T(1));
        });
      }
      return absl::OkStatus();
    }
    Tensor mask = given_mask_ ? ctx.input(kMask) : Tensor::Empty(outputs_[1]);
    if (!given_mask_) {
      DispatchFloat(mask.dtype(), [&](auto zero) {
        using T = decltype(zero);
        T* m = mask.data<T>();
        const uint64_t seed = ctx.seed();
        for (int64_t i = 0; i < mask.num_elements(); ++i)
          m[i] = Uniform(seed, i) >= p_ ? T(1) : T(0);
      });
    }
    ctx.SetOutput(0, Scaled(x, mask));
    if (ctx.num_outputs() > 1) ctx.SetOutput(1, mask);
    if (!given_mask_ && ctx.backward_will_run()) ctx.Save(mask);
    return absl::OkStatus();
  }

  // TRAIN: y = x·mask·s with s = 1/(1 - p), so dx = dy·mask·s and
  // dmask = dy·x·s, plus the gradient of the mask output when it is the
  // given mask. EVAL: y = x; the mask reaches no output.
  absl::Status Backward(BackwardContext& ctx) const override {
    const bool dy = ctx.has_grad_output(0);
    if (!train_) {
      if (dy && ctx.needs_grad(kX)) ctx.SetGradInput(kX, ctx.grad_output(0));
      return absl::OkStatus();
    }
    if (dy && ctx.needs_grad(kX)) {
      const Tensor& mask = given_mask_ ? ctx.input(kMask) : ctx.saved()[0];
      ctx.SetGradInput(kX, Scaled(ctx.grad_output(0), mask));
    }
    if (!ctx.needs_grad(kMask)) return absl::OkStatus();
    // needs_grad(kMask) implies a given mask. Only a node that names the
    // mask output has a gradient slot for it.
    const bool dmask_out = num_outputs_ > 1 && ctx.has_grad_output(1);
    Tensor dm;
    if (dy) dm = MaskGrad(ctx.grad_output(0), ctx.input(kX));
    if (dmask_out)
      dm = dm.defined() ? Sum(dm, ctx.grad_output(1)) : ctx.grad_output(1);
    if (dm.defined()) ctx.SetGradInput(kMask, std::move(dm));
    return absl::OkStatus();
  }

 private:
  // 1/(1 - p); p = 1 drops everything and scales by 0, as PyTorch does
  // (y = x·0), where 1/(1 - p) would make 0·inf = NaN.
  double Scale() const { return p_ == 1 ? 0.0 : 1 / (1 - p_); }

  // g·m/(1 - p), elementwise (m broadcast over each plane).
  Tensor Scaled(const Tensor& g, const Tensor& m) const {
    Tensor out = Tensor::Empty(g.meta());
    DispatchFloat(g.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T scale = static_cast<T>(Scale());
      const T* gp = g.data<T>();
      const T* mp = m.data<T>();
      T* o = out.data<T>();
      for (int64_t i = 0; i < out.num_elements(); ++i)
        o[i] = gp[i] * mp[i / plane_] * scale;
    });
    return out;
  }

  // dL/dmask from dy: Σ over each plane of dy·x/(1 - p).
  Tensor MaskGrad(const Tensor& dy, const Tensor& x) const {
    Tensor out = Tensor::Zeros(outputs_[1].dtype, outputs_[1].shape);
    DispatchFloat(dy.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T scale = static_cast<T>(Scale());
      const T* gp = dy.data<T>();
      const T* xp = x.data<T>();
      T* o = out.data<T>();
      for (int64_t i = 0; i < dy.num_elements(); ++i)
        o[i / plane_] += gp[i] * xp[i] * scale;
    });
    return out;
  }

  // a + b into a, which Backward allocated.
  static Tensor Sum(Tensor a, const Tensor& b) {
    DispatchFloat(a.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* ap = a.data<T>();
      const T* bp = b.data<T>();
      for (int64_t i = 0; i < a.num_elements(); ++i) ap[i] += bp[i];
    });
    return a;
  }

  double p_ = 0.5;
  bool train_ = true, given_mask_ = false;
  int64_t plane_ = 1;    // elements each mask value covers
  int num_outputs_ = 1;  // the node's: 2 when it names the mask output
};

OpSchema DropoutSchema(bool channelwise) {
  OpSchema s;
  s.name = channelwise ? "Dropout2d" : "Dropout";
  s.description =
      channelwise
          ? "channel-wise dropout of x [N, C, ...]: TRAIN: y = x·mask/(1 - "
            "p), mask [N, C, 1, ...] drawn from the request seed unless "
            "given, one value per channel; EVAL: y = x. A second output, if "
            "named, returns the mask"
          : "TRAIN: y = x·mask/(1 - p), mask drawn from the request seed "
            "unless given; EVAL: y = x. A second output, if named, returns "
            "the mask";
  s.inputs = {{"x"}, {"mask", /*optional=*/true}};
  s.outputs = {"y", "mask"};
  s.min_outputs = 1;
  s.attrs = {{"p", AttrType::kFloat, AttrValue(0.5),
              "probability of dropping, in [0, 1] (1 drops all: y = 0)"}};
  s.create = [channelwise](const OpConfig& c) {
    return DropoutOp::Create(c, channelwise);
  };
  return s;
}

REGISTER_OP(DropoutSchema(false));
REGISTER_OP(DropoutSchema(true));

}  // namespace
}  // namespace gradserve
