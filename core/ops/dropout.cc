// Dropout(x, mask?) -> y (, mask): in TRAIN, y = x·mask/(1 - p) with
// mask[i] in {0, 1} kept with probability 1 - p; in EVAL, y = x (and the
// mask is all ones). An explicit mask input replaces the draw. p = 1 drops
// everything (y = 0), as in PyTorch.
//
// The draw is counter-based: element i keeps when a hash of (node seed, i)
// maps to a uniform number >= p. The node seed mixes the request's seed with
// the node's name, so a request seed gives the same masks whatever the
// thread count or scheduling, and different nodes different masks. oneDNN
// 2.6 has no dropout primitive: both passes are plain loops.
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
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(c.ExpectFloat(kX));
    if (c.has_input(kMask)) {
      RETURN_IF_ERROR(c.ExpectFloat(kMask));
      RETURN_IF_ERROR(c.ExpectShape(kMask, c.shape(kX)));
    }
    auto op = std::make_unique<DropoutOp>();
    op->p_ = c.attrs().GetFloat("p");
    if (!(op->p_ >= 0 && op->p_ <= 1))
      return c.attrs().Invalid("p", "in [0, 1]");
    op->train_ = c.mode() == Mode::kTrain;
    op->given_mask_ = c.has_input(kMask);
    op->num_outputs_ = c.num_outputs();
    op->outputs_ = {c.input(kX), c.input(kX)};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return outputs_[0].num_elements(); }
  // A drawn mask the node does not output (kept for Backward).
  int64_t ExtraBytes() const override {
    return train_ && !given_mask_ && num_outputs_ == 1 ? outputs_[0].num_bytes()
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
    Tensor mask = given_mask_ ? ctx.input(kMask) : Tensor::Empty(x.meta());
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const int64_t n = y.num_elements();
      if (!given_mask_) {
        T* m = mask.data<T>();
        const uint64_t seed = ctx.seed();
        for (int64_t i = 0; i < n; ++i)
          m[i] = Uniform(seed, i) >= p_ ? T(1) : T(0);
      }
      const T scale = static_cast<T>(Scale());
      const T* xp = x.data<T>();
      const T* m = mask.data<T>();
      T* yp = y.data<T>();
      for (int64_t i = 0; i < n; ++i) yp[i] = xp[i] * m[i] * scale;
    });
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
    if (dy) dm = Scaled(ctx.grad_output(0), ctx.input(kX));
    if (dmask_out)
      dm = dm.defined() ? Sum(dm, ctx.grad_output(1)) : ctx.grad_output(1);
    if (dm.defined()) ctx.SetGradInput(kMask, std::move(dm));
    return absl::OkStatus();
  }

 private:
  // 1/(1 - p); p = 1 drops everything and scales by 0, as PyTorch does
  // (y = x·0), where 1/(1 - p) would make 0·inf = NaN.
  double Scale() const { return p_ == 1 ? 0.0 : 1 / (1 - p_); }

  // g·m/(1 - p), elementwise.
  Tensor Scaled(const Tensor& g, const Tensor& m) const {
    Tensor out = Tensor::Empty(g.meta());
    DispatchFloat(g.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T scale = static_cast<T>(Scale());
      const T* gp = g.data<T>();
      const T* mp = m.data<T>();
      T* o = out.data<T>();
      for (int64_t i = 0; i < out.num_elements(); ++i)
        o[i] = gp[i] * mp[i] * scale;
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
  int num_outputs_ = 1;  // the node's: 2 when it names the mask output
};

OpSchema DropoutSchema() {
  OpSchema s;
  s.name = "Dropout";
  s.description =
      "TRAIN: y = x·mask/(1 - p), mask drawn from the request seed unless "
      "given; EVAL: y = x. A second output, if named, returns the mask";
  s.inputs = {{"x"}, {"mask", /*optional=*/true}};
  s.outputs = {"y", "mask"};
  s.min_outputs = 1;
  s.attrs = {{"p", AttrType::kFloat, AttrValue(0.5),
              "probability of dropping, in [0, 1] (1 drops all: y = 0)"}};
  s.create = DropoutOp::Create;
  return s;
}

REGISTER_OP(DropoutSchema());

}  // namespace
}  // namespace gradserve
