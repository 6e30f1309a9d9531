// What ops allocate for empty inputs: an empty batch with large other dims
// may allocate its inputs, outputs and gradients and nothing more, and the
// memory check must accept it under a limit of exactly that (so an op's
// ExtraBytes() neither misses nor overstates what it allocates).
//
// This executable replaces the global allocation functions to count the
// bytes of Tensor storage (aligned allocations) and of every other
// allocation of 64 KiB or more (smaller ones are plans, ops, names), live
// and at their peak.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/core/op_sweep_cases.h"

namespace {

std::atomic<int64_t> live_bytes{0};
std::atomic<int64_t> peak_bytes{0};

constexpr size_t kPlainHeader = 16;  // keeps malloc's alignment
constexpr size_t kCountedPlain = 64 << 10;

void Count(size_t bytes, bool aligned, int sign) {
  if (!aligned && bytes < kCountedPlain) return;
  const int64_t now = live_bytes.fetch_add(sign * static_cast<int64_t>(bytes)) +
                      sign * static_cast<int64_t>(bytes);
  int64_t peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
  }
}

// Every block starts with a header holding the requested size.
void* Allocate(size_t bytes, size_t align) {
  const bool aligned = align > kPlainHeader;
  const size_t header = aligned ? align : kPlainHeader;
  const size_t total = (bytes + header + align - 1) / align * align;
  void* base =
      aligned ? std::aligned_alloc(align, total) : std::malloc(bytes + header);
  if (base == nullptr) return nullptr;
  *static_cast<size_t*>(base) = bytes;
  Count(bytes, aligned, +1);
  return static_cast<char*>(base) + header;
}

void Release(void* p, size_t align) {
  if (p == nullptr) return;
  const bool aligned = align > kPlainHeader;
  void* base = static_cast<char*>(p) - (aligned ? align : kPlainHeader);
  Count(*static_cast<size_t*>(base), aligned, -1);
  std::free(base);
}

void* AllocateOrThrow(size_t bytes, size_t align) {
  void* p = Allocate(bytes, align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

size_t Align(std::align_val_t a) { return static_cast<size_t>(a); }

}  // namespace

void* operator new(size_t n) { return AllocateOrThrow(n, kPlainHeader); }
void* operator new[](size_t n) { return AllocateOrThrow(n, kPlainHeader); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return Allocate(n, kPlainHeader);
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return Allocate(n, kPlainHeader);
}
void* operator new(size_t n, std::align_val_t a) {
  return AllocateOrThrow(n, Align(a));
}
void* operator new[](size_t n, std::align_val_t a) {
  return AllocateOrThrow(n, Align(a));
}
void* operator new(size_t n, std::align_val_t a,
                   const std::nothrow_t&) noexcept {
  return Allocate(n, Align(a));
}
void* operator new[](size_t n, std::align_val_t a,
                     const std::nothrow_t&) noexcept {
  return Allocate(n, Align(a));
}
void operator delete(void* p) noexcept { Release(p, kPlainHeader); }
void operator delete[](void* p) noexcept { Release(p, kPlainHeader); }
void operator delete(void* p, size_t) noexcept { Release(p, kPlainHeader); }
void operator delete[](void* p, size_t) noexcept { Release(p, kPlainHeader); }
void operator delete(void* p, const std::nothrow_t&) noexcept {
  Release(p, kPlainHeader);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  Release(p, kPlainHeader);
}
void operator delete(void* p, std::align_val_t a) noexcept {
  Release(p, Align(a));
}
void operator delete[](void* p, std::align_val_t a) noexcept {
  Release(p, Align(a));
}
void operator delete(void* p, size_t, std::align_val_t a) noexcept {
  Release(p, Align(a));
}
void operator delete[](void* p, size_t, std::align_val_t a) noexcept {
  Release(p, Align(a));
}
void operator delete(void* p, std::align_val_t a,
                     const std::nothrow_t&) noexcept {
  Release(p, Align(a));
}
void operator delete[](void* p, std::align_val_t a,
                       const std::nothrow_t&) noexcept {
  Release(p, Align(a));
}

namespace gradserve::testing {
namespace {

// Empty tensors' storage: one byte each.
constexpr int64_t kSlack = 4096;

int64_t Bytes(const TensorMeta& meta, DType float_dtype) {
  const DType dtype = IsFloating(meta.dtype) ? float_dtype : meta.dtype;
  return meta.num_elements() * static_cast<int64_t>(DTypeSize(dtype));
}

// Runs `run`, returning the peak of counted bytes above those live before.
template <typename F>
int64_t PeakDuring(F&& run) {
  const int64_t before = live_bytes.load();
  peak_bytes.store(before);
  run();
  return peak_bytes.load() - before;
}

// Inputs, outputs and the gradients of wrt, in the run's float dtype.
int64_t NeededBytes(const OpCase& c, const GraphDef& graph,
                    const ComputeArgs& args) {
  auto outputs = OutputMetas(graph, args);
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  if (!outputs.ok()) return 0;
  int64_t bytes = 0;
  for (const TensorMeta& out : *outputs) bytes += Bytes(out, args.float_dtype);
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const TestInput& in = c.inputs[i];
    if (in.name.empty()) continue;
    const bool wrt =
        std::find(args.wrt.begin(), args.wrt.end(), in.name) != args.wrt.end();
    bytes += Bytes(CaseInput(c, i).meta(), args.float_dtype) * (wrt ? 2 : 1);
  }
  return bytes;
}

// Runs the case under a limit of what it needs, counting what Compute
// allocates (the inputs are drawn before).
void ExpectAllocatesOnlyWhatItNeeds(const OpCase& c, DType float_dtype) {
  SCOPED_TRACE(absl::StrCat(CaseName(c), " in ", DTypeName(float_dtype)));
  const GraphDef graph = SingleOpGraph(c);
  ComputeArgs args = CaseArgs(c, graph);
  args.float_dtype = float_dtype;
  ASSERT_FALSE(args.wrt.empty());
  Limits limits;
  limits.max_request_bytes = NeededBytes(c, graph, args) + kSlack;
  absl::StatusOr<RunResult> r;
  const int64_t peak = PeakDuring([&] { r = Compute(graph, args, limits); });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(peak, limits.max_request_bytes) << "allocated " << peak;
  for (const auto& [name, grad] : r->gradients) {
    const Tensor g = grad.CastFloat(DType::kFloat64);
    for (double v : g.values<double>()) {
      ASSERT_EQ(v, 0) << "d/d" << name << " of an empty batch";
    }
  }
}

class EmptyBatch : public ::testing::TestWithParam<std::string> {};

TEST_P(EmptyBatch, AllocatesOnlyInputsOutputsAndGradients) {
  ForEachWrtSubset(EmptyCases(), GetParam(), [](const OpCase& c) {
    for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
      ExpectAllocatesOnlyWhatItNeeds(c, dtype);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(RegisteredOps, EmptyBatch,
                         ::testing::ValuesIn(RegisteredOps()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// Runs `args` counting what Compute allocates: the memory check must
// reject the request under a limit of one byte less.
void ExpectWithinTheMemoryCheck(const GraphDef& graph,
                                const ComputeArgs& args) {
  absl::StatusOr<RunResult> r;
  const int64_t peak = PeakDuring([&] { r = Compute(graph, args, Limits{}); });
  ASSERT_TRUE(r.ok()) << r.status();
  Limits limits;
  limits.max_request_bytes = peak - 1;
  auto under = Compute(graph, args, limits);
  EXPECT_EQ(under.status().code(), absl::StatusCode::kResourceExhausted)
      << "allocated " << peak << " bytes, but a limit of " << peak - 1
      << " gave " << under.status();
}

// The reference path (float64 loops) of every sweep case, forward only and
// with each wrt subset, allocates no more than the memory check counts.
// (The oneDNN path may also reorder into blocked layouts and grow a
// scratchpad, which the check does not count.)
TEST(MemoryCheck, CountsWhatFloat64RunsAllocate) {
  for (const auto& [op, cases] : SweepCases()) {
    for (const OpCase& base : cases) {
      SCOPED_TRACE(CaseName(base));
      const GraphDef graph = SingleOpGraph(base);
      ComputeArgs forward = CaseArgs(base, graph);
      forward.float_dtype = DType::kFloat64;
      forward.wrt.clear();
      forward.output_gradients.clear();
      {
        SCOPED_TRACE("forward only");
        ExpectWithinTheMemoryCheck(graph, forward);
      }
      for (const auto& subset : NonEmptySubsets(FloatInputs(base))) {
        const OpCase c = WithWrt(base, subset);
        SCOPED_TRACE(CaseName(c));
        ComputeArgs args = CaseArgs(c, graph);
        args.float_dtype = DType::kFloat64;
        ExpectWithinTheMemoryCheck(graph, args);
      }
    }
  }
}

}  // namespace
}  // namespace gradserve::testing
