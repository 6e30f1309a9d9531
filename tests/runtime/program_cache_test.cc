// The program cache: hits skip compiling, results equal uncached runs,
// and the byte budget evicts least recently used programs first.
#include "core/compile/program_cache.h"

#include <cstring>
#include <random>

#include "core/compute.h"
#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"

namespace gradserve {
namespace {

Tensor Random(Shape shape, uint64_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  Tensor t = Tensor::Empty(DType::kFloat32, std::move(shape));
  for (float& v : t.mutable_values<float>()) v = u(rng);
  return t;
}

// x [4, in] -> Linear -> ReLU -> Linear -> MSELoss against t.
GraphDef Mlp(int64_t in, uint64_t seed) {
  GraphDef g;
  g.inputs = {"x", "t"};
  g.parameters["W1"] = Random({8, in}, seed);
  g.parameters["W2"] = Random({3, 8}, seed + 1);
  g.nodes = {{"fc1", "Linear", {"x", "W1"}, {"h"}, {}},
             {"relu", "ReLU", {"h"}, {"r"}, {}},
             {"fc2", "Linear", {"r", "W2"}, {"y"}, {}},
             {"loss", "MSELoss", {"y", "t"}, {"L"}, {}}};
  return g;
}

ComputeArgs Args(int64_t in) {
  ComputeArgs args;
  args.feeds["x"] = Random({4, in}, 7);
  args.feeds["t"] = Random({4, 3}, 8);
  args.loss = "L";
  return args;
}

// Runs through the cache; `indexed` counts the index builds (misses).
absl::StatusOr<RunResult> CachedRun(ProgramCache& cache, const GraphDef& g,
                                    const ComputeArgs& args,
                                    int* indexed = nullptr) {
  auto program = cache.GetOrCompile(
      StructureKey(g), ProgramRequestFor(args),
      [&] {
        if (indexed != nullptr) ++*indexed;
        return GraphIndex::Build(g, Limits{});
      },
      Limits{});
  if (!program.ok()) return program.status();
  return Run(*program, args.feeds, ValuesOf(g), args.output_gradients, {});
}

void ExpectBitwiseEqual(const std::map<std::string, Tensor>& a,
                        const std::map<std::string, Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    const Tensor& u = b.at(name);
    ASSERT_EQ(t.meta(), u.meta()) << name;
    EXPECT_EQ(0, std::memcmp(t.raw_data(), u.raw_data(), t.num_bytes()))
        << name;
  }
}

TEST(ProgramCache, SecondRequestOfTheSameStructureHitsWithOtherWeights) {
  ProgramCache cache(int64_t{64} << 20);
  int indexed = 0;
  ASSERT_TRUE(CachedRun(cache, Mlp(5, 1), Args(5), &indexed).ok());
  EXPECT_EQ(cache.stats().misses, 1);
  EXPECT_EQ(cache.stats().hits, 0);
  // Other parameter values, same structure: a hit that plans nothing, and
  // the results of an uncached run.
  const GraphDef other = Mlp(5, 100);
  auto cached = CachedRun(cache, other, Args(5), &indexed);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(indexed, 1);
  EXPECT_EQ(cache.stats().hits, 1);
  EXPECT_EQ(cache.stats().misses, 1);
  auto fresh = Compute(other, Args(5), Limits{});
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  ExpectBitwiseEqual(cached->outputs, fresh->outputs);
  ExpectBitwiseEqual(cached->gradients, fresh->gradients);
}

TEST(ProgramCache, AnyStructuralChangeMisses) {
  ProgramCache cache(int64_t{64} << 20);
  ASSERT_TRUE(CachedRun(cache, Mlp(5, 1), Args(5)).ok());
  ASSERT_TRUE(CachedRun(cache, Mlp(6, 1), Args(6)).ok());  // shapes
  GraphDef leaky = Mlp(5, 1);
  leaky.nodes[1].op = "LeakyReLU";  // op
  ASSERT_TRUE(CachedRun(cache, leaky, Args(5)).ok());
  leaky.nodes[1].attributes["alpha"] = 0.2;  // attribute
  ASSERT_TRUE(CachedRun(cache, leaky, Args(5)).ok());
  ComputeArgs eval = Args(5);
  eval.mode = Mode::kEval;  // mode
  ASSERT_TRUE(CachedRun(cache, Mlp(5, 1), eval).ok());
  ComputeArgs wrt = Args(5);
  wrt.wrt = {"W1"};  // wrt
  ASSERT_TRUE(CachedRun(cache, Mlp(5, 1), wrt).ok());
  EXPECT_EQ(cache.stats().misses, 6);
  EXPECT_EQ(cache.stats().hits, 0);
  EXPECT_EQ(cache.stats().entries, 6);
}

TEST(ProgramCache, EvictsLeastRecentlyUsedUnderTheByteBudget) {
  ProgramCache probe(int64_t{64} << 20);
  ASSERT_TRUE(CachedRun(probe, Mlp(5, 1), Args(5)).ok());
  const int64_t one = probe.stats().bytes;
  ASSERT_GT(one, 0);
  ProgramCache cache(2 * one + one / 2);  // room for two
  ASSERT_TRUE(CachedRun(cache, Mlp(5, 1), Args(5)).ok());
  ASSERT_TRUE(CachedRun(cache, Mlp(6, 1), Args(6)).ok());
  ASSERT_TRUE(CachedRun(cache, Mlp(5, 1), Args(5)).ok());  // 5 is recent
  ASSERT_TRUE(CachedRun(cache, Mlp(7, 1), Args(7)).ok());  // evicts 6
  EXPECT_EQ(cache.stats().evictions, 1);
  EXPECT_LE(cache.stats().bytes, cache.stats().capacity_bytes);
  const int64_t hits = cache.stats().hits;
  ASSERT_TRUE(CachedRun(cache, Mlp(5, 1), Args(5)).ok());
  EXPECT_EQ(cache.stats().hits, hits + 1);
  ASSERT_TRUE(CachedRun(cache, Mlp(6, 1), Args(6)).ok());
  EXPECT_EQ(cache.stats().hits, hits + 1);  // 6 was evicted: a miss
}

TEST(ProgramCache, ZeroCapacityCachesNothing) {
  ProgramCache cache(0);
  ASSERT_TRUE(CachedRun(cache, Mlp(5, 1), Args(5)).ok());
  ASSERT_TRUE(CachedRun(cache, Mlp(5, 1), Args(5)).ok());
  EXPECT_EQ(cache.stats().hits, 0);
  EXPECT_EQ(cache.stats().entries, 0);
}

TEST(ProgramCache, FailedCompilesAreNotCached) {
  ProgramCache cache(int64_t{64} << 20);
  ComputeArgs bad = Args(5);
  bad.feeds["x"] = Random({4, 6}, 7);  // W1 wants 5 inputs
  EXPECT_FALSE(CachedRun(cache, Mlp(5, 1), bad).ok());
  EXPECT_EQ(cache.stats().entries, 0);
}

}  // namespace
}  // namespace gradserve
