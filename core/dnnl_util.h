// oneDNN glue: the engine, plain memory descriptors over Tensors, user-mode
// scratchpads, and the one place dnnl::error becomes an absl::Status.
#ifndef GRADSERVE_CORE_DNNL_UTIL_H_
#define GRADSERVE_CORE_DNNL_UTIL_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/tensor.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace gradserve {

dnnl::engine& CpuEngine();

// "2.6.3", and the ISA oneDNN dispatches to, e.g. "avx512_core".
std::string DnnlVersion();
std::string DnnlCpuIsa();

dnnl::memory::data_type DnnlType(DType dtype);
dnnl::memory::dims DnnlDims(const Shape& shape);
// Row-major ("abcd...") descriptor of a float32/int64 shape; a scalar is [1].
dnnl::memory::desc PlainDesc(const Shape& shape, DType dtype = DType::kFloat32);
// One argument of a primitive execution: a tensor's storage as `desc`
// describes it. It does not own the storage: the tensor must outlive the
// execution, so a temporary (a Reordered() copy, say) is refused at compile
// time (an argument built from one used to point at freed storage).
struct DnnlArg {
  dnnl::memory::desc desc;
  void* data = nullptr;
};
// oneDNN reads const inputs only.
DnnlArg WrapTensor(const dnnl::memory::desc& desc, const Tensor& t);
DnnlArg WrapTensor(const dnnl::memory::desc& desc, Tensor&& t) = delete;

// The arguments of one execution, by oneDNN argument id (DNNL_ARG_SRC, ...),
// on the stack.
class DnnlArgs {
 public:
  DnnlArgs(std::initializer_list<std::pair<int, DnnlArg>> args)
      : args_(args.begin(), args.end()) {}
  // Argument `id`, added if absent.
  DnnlArg& operator[](int id);
  auto begin() const { return args_.begin(); }
  auto end() const { return args_.end(); }
  size_t size() const { return args_.size(); }

 private:
  absl::InlinedVector<std::pair<int, DnnlArg>, 5> args_;
};

// Attributes every primitive is created with: a user-provided scratchpad,
// so that primitives may run on any thread and concurrently.
dnnl::primitive_attr DefaultAttr();

// A primitive together with the scratchpad size it needs.
struct DnnlPrimitive {
  dnnl::primitive primitive;
  dnnl::memory::desc scratchpad;
};

// Primitives created by the calling thread so far: compiling a program
// counts them to estimate the memory it holds.
int64_t PrimitivesCreatedOnThisThread();
void CountPrimitive();

// DnnlPrimitive of primitive class P (e.g. dnnl::inner_product_forward).
template <typename P>
DnnlPrimitive MakePrimitive(const typename P::primitive_desc& pd) {
  CountPrimitive();
  return {P(pd), pd.scratchpad_desc()};
}

// Executes primitives on a stream of the calling thread, with a scratchpad
// buffer reused across primitives. One per executing thread. The oneDNN
// memory object of each (primitive, argument) is kept and pointed at the
// next execution's storage, instead of created and freed per execution.
class DnnlRunner {
 public:
  DnnlRunner();
  void Execute(const DnnlPrimitive& p, const DnnlArgs& args);

  // Memory objects kept (bounded: all are dropped past kMaxMemories).
  size_t memories() const { return memories_.size(); }
  static constexpr size_t kMaxMemories = 1024;

 private:
  // The memory object for argument `id` of `p` over `data`. A kept one
  // is reused when its descriptor is `desc` (a primitive freed and another
  // created at its address may differ).
  dnnl_memory_t Bind(const DnnlPrimitive& p, int id,
                     const dnnl::memory::desc& desc, void* data);

  dnnl::stream stream_;
  Tensor scratch_;  // grown on demand, as bytes
  absl::flat_hash_map<std::pair<const_dnnl_primitive_t, int>, dnnl::memory>
      memories_;
};

// Runs `f`, turning a dnnl::error into a status that names `node`:
// UNIMPLEMENTED for configurations oneDNN cannot run, INTERNAL otherwise.
absl::Status DnnlErrorToStatus(const dnnl::error& e, absl::string_view node);

template <typename F>
absl::Status CatchDnnl(absl::string_view node, F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const dnnl::error& e) {
    return DnnlErrorToStatus(e, node);
  }
}

struct Layout {
  dnnl::memory::desc desc;
};

// The descriptor of a tensor's storage: its layout, or plain row-major.
dnnl::memory::desc DescOf(const Tensor& t);
// A tensor for `meta` stored as `desc` (plain when desc is the plain one).
Tensor EmptyIn(const TensorMeta& meta, const dnnl::memory::desc& desc);
// `t` stored as `desc`: t itself when it already is, else a reordered copy.
Tensor Reordered(const Tensor& t, const dnnl::memory::desc& desc,
                 DnnlRunner& runner);
// The same, with t's storage described by `from` (e.g. plain weights seen
// with oneDNN's grouped dims).
Tensor Reordered(const Tensor& t, const dnnl::memory::desc& from,
                 const dnnl::memory::desc& to, DnnlRunner& runner);
// `t` in plain row-major layout.
Tensor Plain(const Tensor& t, DnnlRunner& runner);

// Whether a value of this meta runs on oneDNN: float32 and not empty (the
// reference loops serve float64 and empty shapes).
inline bool RunsOnDnnl(const TensorMeta& meta) {
  return meta.dtype == DType::kFloat32 && meta.num_elements() > 0;
}

// Executes `p` on the runner; a dnnl::error becomes a status naming `node`.
inline absl::Status ExecuteDnnl(DnnlRunner& runner, absl::string_view node,
                                const DnnlPrimitive& p, const DnnlArgs& args) {
  return CatchDnnl(node, [&] {
    runner.Execute(p, args);
    return absl::OkStatus();
  });
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_DNNL_UTIL_H_
