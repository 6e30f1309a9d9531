#include "core/ops/reduction.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "core/ops/op_util.h"

namespace gradserve {
namespace {

// One merged group of the input: its size and its row-major stride.
struct Axis {
  int64_t size = 1;
  int64_t stride = 0;
};
using Axes = absl::InlinedVector<Axis, 4>;

int64_t Size(const Axes& axes) {
  int64_t size = 1;
  for (const Axis& a : axes) size *= a.size;
  return size;
}

// Calls f(offset) for the multi-indices [begin, end) over `axes` in
// row-major order, with offset = Σ index · stride (the one index of no axes
// has offset 0).
template <typename F>
void ForEachOffset(const Axes& axes, int64_t begin, int64_t end, F&& f) {
  if (begin >= end) return;
  const int n = static_cast<int>(axes.size());
  absl::InlinedVector<int64_t, 4> index(n);
  int64_t offset = 0;
  int64_t rest = begin;
  for (int d = n - 1; d >= 0; --d) {
    index[d] = rest % axes[d].size;
    rest /= axes[d].size;
    offset += index[d] * axes[d].stride;
  }
  for (int64_t i = begin; i < end; ++i) {
    f(offset);
    for (int d = n - 1; d >= 0; --d) {
      offset += axes[d].stride;
      if (++index[d] < axes[d].size) break;
      offset -= axes[d].stride * axes[d].size;
      index[d] = 0;
    }
  }
}

template <typename F>
void ForEachOffset(const Axes& axes, F&& f) {
  ForEachOffset(axes, 0, Size(axes), std::forward<F>(f));
}

// Input elements below which a sum stays on the calling thread: waking
// OpenMP's idle threads (tens of microseconds, more on a loaded machine)
// would cost more than they save.
constexpr int64_t kParallelWork = int64_t{1} << 20;

// Splits tasks [0, tasks) of `work` input elements in all into contiguous
// ranges and calls f(begin, end) for each, in parallel when there is enough
// work (dynamically: a descheduled thread holds nobody up). Each task's
// result does not depend on the split.
template <typename F>
void ForEachTaskRange(int64_t tasks, int64_t work, F&& f) {
  constexpr int64_t kMaxRanges = 64;
  // No region for one range: a parallel ChunkedSum inside it would be a
  // nested region, whose threads libgomp starts anew each time (~3 ms).
  if (tasks == 0) return;
  if (tasks == 1 || work < kParallelWork) return f(0, tasks);
  const int64_t ranges = std::min(tasks, kMaxRanges);
  const int64_t per = (tasks + ranges - 1) / ranges;
#pragma omp parallel for schedule(dynamic)
  for (int64_t r = 0; r < ranges; ++r) {
    f(r * per, std::min(tasks, (r + 1) * per));
  }
}

// Σ p[0, n) in double, in eight partial sums so that the loop vectorises.
template <typename T>
double ContiguousSum(const T* p, int64_t n) {
  constexpr int kLanes = 8;
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) lanes[k] += p[i + k];
  }
  double sum = 0;
  for (; i < n; ++i) sum += p[i];
  for (double lane : lanes) sum += lane;
  return sum;
}

// ContiguousSum in fixed chunks whose sums are added in order: the same
// result on any number of threads, and the chunks in parallel when asked
// and long enough.
template <typename T>
double ChunkedSum(const T* p, int64_t n, bool parallel) {
  constexpr int64_t kChunk = int64_t{1} << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) return ContiguousSum(p, n);
  std::vector<double> partial(chunks);
#pragma omp parallel for schedule(dynamic) if (parallel && n >= kParallelWork)
  for (int64_t c = 0; c < chunks; ++c) {
    partial[c] =
        ContiguousSum(p + c * kChunk, std::min(kChunk, n - c * kChunk));
  }
  return ContiguousSum(partial.data(), chunks);
}

// acc[j] += Σ_{r < rows} p[r · stride + j] for j < n.
template <typename T>
void AddRows(const T* p, int64_t rows, int64_t stride, int64_t n, double* acc) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = p + r * stride;
    for (int64_t j = 0; j < n; ++j) acc[j] += row[j];
  }
}

// The input as kept and summed groups, each with its input stride.
struct Split {
  Axes kept, summed;
};

// Output elements summed at once when the last group is kept: their double
// accumulators (2 KiB) stay in L1 while the rows above them stream past.
constexpr int64_t kColumnBlock = 256;

// The last group is summed: output o (kept index o) is the sum of the
// contiguous runs of the last group at every index of the other summed
// groups.
template <typename T>
void SumRuns(Split s, const T* in, T* out, double scale) {
  const int64_t run = s.summed.back().size;
  s.summed.pop_back();
  const int64_t outputs = Size(s.kept);
  const int64_t per_output = run * Size(s.summed);
  ForEachTaskRange(outputs, outputs * per_output, [&](int64_t b, int64_t e) {
    int64_t o = b;
    ForEachOffset(s.kept, b, e, [&](int64_t base) {
      double sum = 0;
      ForEachOffset(s.summed, [&](int64_t offset) {
        sum += ChunkedSum(in + base + offset, run, outputs == 1);
      });
      out[o++] = static_cast<T>(sum * scale);
    });
  });
}

// out[j] = scale · Σ of column j < n of the block starting at `in`, over the
// rows of `rows` at every index of the other summed groups.
template <typename T>
void SumBlock(const Axes& summed, Axis rows, const T* in, int64_t n,
              double scale, T* out) {
  double acc[kColumnBlock] = {};
  ForEachOffset(summed, [&](int64_t offset) {
    AddRows(in + offset, rows.size, rows.stride, n, acc);
  });
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<T>(acc[j] * scale);
}

// The last group is kept: each task sums a block of up to kColumnBlock
// consecutive outputs over the rows of the summed group right above them,
// at every index of the other summed groups.
template <typename T>
void SumColumns(Split s, const T* in, T* out, double scale) {
  const int64_t columns = s.kept.back().size;
  s.kept.pop_back();
  Axis rows;  // none: one row
  if (!s.summed.empty()) {
    rows = s.summed.back();
    s.summed.pop_back();
  }
  const int64_t blocks = (columns + kColumnBlock - 1) / kColumnBlock;
  const int64_t work = Size(s.kept) * columns * rows.size * Size(s.summed);
  ForEachTaskRange(Size(s.kept) * blocks, work, [&](int64_t b, int64_t e) {
    int64_t k = b / blocks;  // tasks are (kept index, block), row-major
    ForEachOffset(s.kept, k, (e - 1) / blocks + 1, [&](int64_t base) {
      for (int64_t t = std::max(b, k * blocks);
           t < std::min(e, (k + 1) * blocks); ++t) {
        const int64_t j0 = (t - k * blocks) * kColumnBlock;
        SumBlock(s.summed, rows, in + base + j0,
                 std::min(kColumnBlock, columns - j0), scale,
                 out + k * columns + j0);
      }
      ++k;
    });
  });
}

}  // namespace

Reduction::Reduction(const Shape& full, const std::vector<bool>& reduced) {
  for (size_t d = 0; d < full.size(); ++d) {
    if (reduced[d]) count_ = MulSat(count_, full[d]);
    if (full[d] == 1) continue;  // a size-1 dim joins either kind of group
    if (!groups_.empty() && group_reduced_.back() == reduced[d]) {
      groups_.back() = MulSat(groups_.back(), full[d]);
    } else {
      groups_.push_back(full[d]);
      group_reduced_.push_back(reduced[d]);
    }
  }
}

void Reduction::Run(const Tensor& in, Tensor& out, double scale) const {
  DispatchFloat(out.dtype(), [&](auto zero) {
    using T = decltype(zero);
    RunTyped(in.data<T>(), out.data<T>(), scale);
  });
}

// An empty mean is 0 · (1/0) = NaN, as in PyTorch.
template <typename T>
void Reduction::RunTyped(const T* in, T* out, double scale) const {
  if (groups_.empty()) {  // one element
    out[0] = static_cast<T>(in[0] * scale);
    return;
  }
  Split s;
  int64_t stride = 1;
  for (int g = static_cast<int>(groups_.size()) - 1; g >= 0; --g) {
    Axes& axes = group_reduced_[g] ? s.summed : s.kept;
    axes.insert(axes.begin(), Axis{groups_[g], stride});
    stride *= groups_[g];
  }
  if (group_reduced_.back()) {
    SumRuns(std::move(s), in, out, scale);
  } else {
    SumColumns(std::move(s), in, out, scale);
  }
}

Tensor SumTo(const Reduction& sum, const Tensor& full, const Shape& shape,
             double scale) {
  if (sum.count() == 1 && scale == 1) return full.Reshaped(shape);
  Tensor out = Tensor::Empty(full.dtype(), shape);
  sum.Run(full, out, scale);
  return out;
}

}  // namespace gradserve
