#include "tests/bench/raw_onednn.h"

#include <memory>
#include <random>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace gradserve::bench {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

struct Step {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  // Plain user memory: x, W, b in; y out; dy in; dx, dW, db out.
  memory x, w, b, y, dy, dx, dw, db;
  // The primitives' own memory where their formats differ.
  memory src, weights, dst, diff_dst_d, diff_dst_w, diff_src, diff_weights,
      weights_d;
  std::vector<std::pair<dnnl::primitive, std::unordered_map<int, memory>>> net;

  // Adds a reorder from `from` to a memory of `desc` when they differ.
  memory Into(const memory& from, const memory::desc& desc) {
    if (from.get_desc() == desc) return from;
    memory to(desc, engine);
    net.push_back(
        {dnnl::reorder(from, to), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}});
    return to;
  }
  void Out(const memory& from, const memory& to) {
    if (from.get_desc() == to.get_desc()) return;
    net.push_back(
        {dnnl::reorder(from, to), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}});
  }
  memory Plain(const memory::dims& dims, tag t, bool random) {
    memory m({dims, dt::f32, t}, engine);
    if (random) {
      std::mt19937 rng(1);
      std::normal_distribution<float> normal(0, 0.1f);
      auto* p = static_cast<float*>(m.get_data_handle());
      for (size_t i = 0; i < m.get_desc().get_size() / sizeof(float); ++i)
        p[i] = normal(rng);
    }
    return m;
  }

  void BuildConv() {
    const memory::dims xd = {8, 64, 56, 56}, wd = {64, 64, 3, 3}, bd = {64};
    const memory::dims strides = {1, 1}, padding = {1, 1};
    x = Plain(xd, tag::nchw, true);
    w = Plain(wd, tag::oihw, true);
    b = Plain(bd, tag::x, true);
    y = Plain(xd, tag::nchw, false);
    dy = Plain(xd, tag::nchw, true);
    dx = Plain(xd, tag::nchw, false);
    dw = Plain(wd, tag::oihw, false);
    db = Plain(bd, tag::x, false);
    const memory::desc any_x(xd, dt::f32, tag::any),
        any_w(wd, dt::f32, tag::any);
    const memory::desc bias(bd, dt::f32, tag::x);
    const auto alg = dnnl::algorithm::convolution_direct;

    dnnl::convolution_forward::primitive_desc fwd(
        {dnnl::prop_kind::forward_training, alg, any_x, any_w, bias, any_x,
         strides, padding, padding},
        engine);
    src = Into(x, fwd.src_desc());
    weights = Into(w, fwd.weights_desc());
    dst = memory(fwd.dst_desc(), engine);
    net.push_back({dnnl::convolution_forward(fwd),
                   {{DNNL_ARG_SRC, src},
                    {DNNL_ARG_WEIGHTS, weights},
                    {DNNL_ARG_BIAS, b},
                    {DNNL_ARG_DST, dst}}});
    Out(dst, y);

    dnnl::convolution_backward_data::primitive_desc bwd_d(
        {alg, any_x, any_w, any_x, strides, padding, padding}, engine, fwd);
    diff_dst_d = Into(dy, bwd_d.diff_dst_desc());
    weights_d = bwd_d.weights_desc() == weights.get_desc()
                    ? weights
                    : Into(w, bwd_d.weights_desc());
    diff_src = memory(bwd_d.diff_src_desc(), engine);
    net.push_back({dnnl::convolution_backward_data(bwd_d),
                   {{DNNL_ARG_DIFF_DST, diff_dst_d},
                    {DNNL_ARG_WEIGHTS, weights_d},
                    {DNNL_ARG_DIFF_SRC, diff_src}}});
    Out(diff_src, dx);

    dnnl::convolution_backward_weights::primitive_desc bwd_w(
        {alg, any_x, any_w, bias, any_x, strides, padding, padding}, engine,
        fwd);
    diff_dst_w = bwd_w.diff_dst_desc() == diff_dst_d.get_desc()
                     ? diff_dst_d
                     : Into(dy, bwd_w.diff_dst_desc());
    diff_weights = memory(bwd_w.diff_weights_desc(), engine);
    net.push_back({dnnl::convolution_backward_weights(bwd_w),
                   {{DNNL_ARG_DIFF_DST, diff_dst_w},
                    {DNNL_ARG_SRC, src},
                    {DNNL_ARG_DIFF_WEIGHTS, diff_weights},
                    {DNNL_ARG_DIFF_BIAS, db}}});
    Out(diff_weights, dw);
  }

  void BuildLinear() {
    const memory::dims xd = {256, 1024}, wd = {1024, 1024}, bd = {1024};
    x = Plain(xd, tag::nc, true);
    w = Plain(wd, tag::oi, true);
    b = Plain(bd, tag::x, true);
    y = Plain(xd, tag::nc, false);
    dy = Plain(xd, tag::nc, true);
    dx = Plain(xd, tag::nc, false);
    dw = Plain(wd, tag::oi, false);
    db = Plain(bd, tag::x, false);
    const memory::desc any_x(xd, dt::f32, tag::any),
        any_w(wd, dt::f32, tag::any);
    const memory::desc bias(bd, dt::f32, tag::x);

    dnnl::inner_product_forward::primitive_desc fwd(
        {dnnl::prop_kind::forward_training, any_x, any_w, bias, any_x}, engine);
    src = Into(x, fwd.src_desc());
    weights = Into(w, fwd.weights_desc());
    dst = memory(fwd.dst_desc(), engine);
    net.push_back({dnnl::inner_product_forward(fwd),
                   {{DNNL_ARG_SRC, src},
                    {DNNL_ARG_WEIGHTS, weights},
                    {DNNL_ARG_BIAS, b},
                    {DNNL_ARG_DST, dst}}});
    Out(dst, y);

    dnnl::inner_product_backward_data::primitive_desc bwd_d(
        {any_x, any_w, any_x}, engine, fwd);
    diff_dst_d = Into(dy, bwd_d.diff_dst_desc());
    weights_d = bwd_d.weights_desc() == weights.get_desc()
                    ? weights
                    : Into(w, bwd_d.weights_desc());
    diff_src = memory(bwd_d.diff_src_desc(), engine);
    net.push_back({dnnl::inner_product_backward_data(bwd_d),
                   {{DNNL_ARG_DIFF_DST, diff_dst_d},
                    {DNNL_ARG_WEIGHTS, weights_d},
                    {DNNL_ARG_DIFF_SRC, diff_src}}});
    Out(diff_src, dx);

    dnnl::inner_product_backward_weights::primitive_desc bwd_w(
        {any_x, any_w, bias, any_x}, engine, fwd);
    diff_dst_w = bwd_w.diff_dst_desc() == diff_dst_d.get_desc()
                     ? diff_dst_d
                     : Into(dy, bwd_w.diff_dst_desc());
    diff_weights = memory(bwd_w.diff_weights_desc(), engine);
    net.push_back({dnnl::inner_product_backward_weights(bwd_w),
                   {{DNNL_ARG_DIFF_DST, diff_dst_w},
                    {DNNL_ARG_SRC, src},
                    {DNNL_ARG_DIFF_WEIGHTS, diff_weights},
                    {DNNL_ARG_DIFF_BIAS, db}}});
    Out(diff_weights, dw);
  }

  void Run() {
    for (auto& [primitive, args] : net) primitive.execute(stream, args);
    stream.wait();
  }
};

}  // namespace

std::function<void()> RawOnednnConvStep() {
  auto step = std::make_shared<Step>();
  step->BuildConv();
  return [step] { step->Run(); };
}

std::function<void()> RawOnednnLinearStep() {
  auto step = std::make_shared<Step>();
  step->BuildLinear();
  return [step] { step->Run(); };
}

}  // namespace gradserve::bench
