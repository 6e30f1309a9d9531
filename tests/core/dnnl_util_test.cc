// The oneDNN glue: memory objects kept per (primitive, argument) and pointed
// at each execution's own storage.
#include "core/dnnl_util.h"

#include <vector>

#include "gtest/gtest.h"

namespace gradserve {
namespace {

// A reorder from plain [rows, cols] to its transpose's layout ("ba").
DnnlPrimitive Transposer(const dnnl::memory::desc& from,
                         const dnnl::memory::desc& to) {
  dnnl::reorder::primitive_desc pd(CpuEngine(), from, CpuEngine(), to,
                                   DefaultAttr());
  return MakePrimitive<dnnl::reorder>(pd);
}

dnnl::memory::desc Transposed(int64_t rows, int64_t cols) {
  return dnnl::memory::desc({rows, cols}, dnnl::memory::data_type::f32,
                            dnnl::memory::format_tag::ba);
}

Tensor Iota(const Shape& shape, float start) {
  Tensor t = Tensor::Empty(DType::kFloat32, shape);
  for (int64_t i = 0; i < t.num_elements(); ++i)
    t.data<float>()[i] = start + static_cast<float>(i);
  return t;
}

std::vector<float> Values(const Tensor& t) {
  return std::vector<float>(t.data<float>(),
                            t.data<float>() + t.num_elements());
}

TEST(DnnlRunner, ReusedMemoryObjectsPointAtEachExecutionsStorage) {
  DnnlRunner runner;
  const auto plain = PlainDesc({2, 3});
  const auto transposed = Transposed(2, 3);
  const DnnlPrimitive p = Transposer(plain, transposed);
  std::vector<Tensor> outs;
  for (float start : {1.0f, 100.0f, -7.0f}) {
    const Tensor in = Iota({2, 3}, start);
    Tensor out = Tensor::Zeros(DType::kFloat32, {2, 3});
    runner.Execute(p, {{DNNL_ARG_FROM, WrapTensor(plain, in)},
                       {DNNL_ARG_TO, WrapTensor(transposed, out)}});
    const float s = start;
    EXPECT_EQ(Values(out),
              (std::vector<float>{s, s + 3, s + 1, s + 4, s + 2, s + 5}))
        << "from " << start;
    outs.push_back(std::move(out));
  }
  EXPECT_EQ(runner.memories(), 2u);  // FROM and TO, kept once each
  // Each execution wrote its own output, not the first one's.
  EXPECT_EQ(outs[0].data<float>()[0], 1.0f);
  EXPECT_EQ(outs[1].data<float>()[0], 100.0f);
}

TEST(DnnlRunner, AnArgumentOfAnotherDescriptorGetsItsOwnMemory) {
  // The same primitive handle slot seen with a new descriptor: a reorder
  // freed and another created (the address may repeat) for other dims.
  DnnlRunner runner;
  for (int64_t cols : {3, 5, 3}) {
    const auto plain = PlainDesc({2, cols});
    const auto transposed = Transposed(2, cols);
    const Tensor in = Iota({2, cols}, 0.0f);
    Tensor out = Tensor::Zeros(DType::kFloat32, {2, cols});
    runner.Execute(Transposer(plain, transposed),
                   {{DNNL_ARG_FROM, WrapTensor(plain, in)},
                    {DNNL_ARG_TO, WrapTensor(transposed, out)}});
    // Column-major: out[c * 2 + r] = in[r * cols + c].
    for (int64_t r = 0; r < 2; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        EXPECT_EQ(out.data<float>()[c * 2 + r], in.data<float>()[r * cols + c])
            << "cols " << cols << " at " << r << "," << c;
      }
    }
  }
}

TEST(DnnlRunner, KeptMemoryObjectsAreBounded) {
  DnnlRunner runner;
  const auto plain = PlainDesc({1, 4});
  const auto transposed = Transposed(1, 4);
  const Tensor in = Iota({1, 4}, 0.0f);
  Tensor out = Tensor::Zeros(DType::kFloat32, {1, 4});
  std::vector<DnnlPrimitive> alive;  // distinct handles, none freed
  for (size_t i = 0; i < DnnlRunner::kMaxMemories; ++i) {
    alive.push_back(Transposer(plain, transposed));
    runner.Execute(alive.back(), {{DNNL_ARG_FROM, WrapTensor(plain, in)},
                                  {DNNL_ARG_TO, WrapTensor(transposed, out)}});
    ASSERT_LE(runner.memories(), DnnlRunner::kMaxMemories);
  }
  EXPECT_LT(runner.memories(), DnnlRunner::kMaxMemories);
  EXPECT_EQ(Values(out), Values(in));  // [1, 4] transposed is the same bytes
}

TEST(DnnlArgs, IndexingAddsOrReplacesAnArgument) {
  const auto desc = PlainDesc({2});
  const Tensor a = Tensor::Zeros(DType::kFloat32, {2});
  const Tensor b = Tensor::Zeros(DType::kFloat32, {2});
  DnnlArgs args = {{DNNL_ARG_SRC, WrapTensor(desc, a)}};
  args[DNNL_ARG_DST] = WrapTensor(desc, b);
  args[DNNL_ARG_SRC] = WrapTensor(desc, b);
  ASSERT_EQ(args.size(), 2u);
  for (const auto& [id, arg] : args) EXPECT_EQ(arg.data, b.raw_data()) << id;
}

}  // namespace
}  // namespace gradserve
