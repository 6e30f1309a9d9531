#include "core/dnnl_util.h"

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace gradserve {

namespace {
thread_local int64_t primitives_created = 0;

// The row-major descriptor of `ndims` dims, built in place (every primitive
// call wraps its tensors in these: the C++ constructor's vectors were a
// fifth of a tiny program's allocations).
dnnl_memory_desc_t RowMajor(int ndims, const dnnl_dim_t* dims,
                            dnnl_data_type_t type) {
  dnnl_dims_t strides;
  dnnl_dim_t stride = 1;
  for (int i = ndims - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= std::max<dnnl_dim_t>(dims[i], 1);
  }
  dnnl_memory_desc_t desc;
  dnnl::error::wrap_c_api(
      dnnl_memory_desc_init_by_strides(&desc, ndims, dims, type, strides),
      "could not construct a memory descriptor using strides");
  return desc;
}
}  // namespace

int64_t PrimitivesCreatedOnThisThread() { return primitives_created; }
void CountPrimitive() { ++primitives_created; }

dnnl::engine& CpuEngine() {
  static auto* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

std::string DnnlVersion() {
  const dnnl_version_t* v = dnnl_version();
  return absl::StrCat(v->major, ".", v->minor, ".", v->patch);
}

std::string DnnlCpuIsa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx512_mic:
      return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops:
      return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    default:
      return "other";
  }
}

dnnl::memory::data_type DnnlType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return dnnl::memory::data_type::f32;
    case DType::kInt64:
    case DType::kFloat64:
      break;
  }
  return dnnl::memory::data_type::undef;
}

dnnl::memory::dims DnnlDims(const Shape& shape) {
  if (shape.empty()) return {1};
  return dnnl::memory::dims(shape.begin(), shape.end());
}

dnnl::memory::desc PlainDesc(const Shape& shape, DType dtype) {
  const int ndims = shape.empty() ? 1 : static_cast<int>(shape.size());
  if (ndims > DNNL_MAX_NDIMS) {  // oneDNN refuses it, with its message
    return dnnl::memory::desc(DnnlDims(shape), DnnlType(dtype),
                              dnnl::memory::dims(shape.size(), 1));
  }
  dnnl_dims_t dims;
  for (int i = 0; i < ndims; ++i) dims[i] = shape.empty() ? 1 : shape[i];
  return dnnl::memory::desc(
      RowMajor(ndims, dims, dnnl::memory::convert_to_c(DnnlType(dtype))));
}

DnnlArg WrapTensor(const dnnl::memory::desc& desc, const Tensor& t) {
  return {desc, const_cast<void*>(t.raw_data())};
}

DnnlArg& DnnlArgs::operator[](int id) {
  for (auto& [arg, value] : args_) {
    if (arg == id) return value;
  }
  return args_.emplace_back(id, DnnlArg{}).second;
}

dnnl::primitive_attr DefaultAttr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

DnnlRunner::DnnlRunner() : stream_(CpuEngine()) {}

dnnl_memory_t DnnlRunner::Bind(const DnnlPrimitive& p, int id,
                               const dnnl::memory::desc& desc, void* data) {
  auto [it, added] = memories_.try_emplace({p.primitive.get(), id});
  dnnl::memory& memory = it->second;
  // Empty when a creation for this key threw: created afresh below.
  if (!added && memory) {
    const dnnl_memory_desc_t* kept = nullptr;
    dnnl::error::wrap_c_api(dnnl_memory_get_memory_desc(memory.get(), &kept),
                            "could not get a memory descriptor");
    if (dnnl_memory_desc_equal(kept, &desc.data)) {
      memory.set_data_handle(data);
      return memory.get();
    }
  }
  memory = dnnl::memory(desc, CpuEngine(), data);
  return memory.get();
}

void DnnlRunner::Execute(const DnnlPrimitive& p, const DnnlArgs& args) {
  if (memories_.size() + args.size() + 1 > kMaxMemories) memories_.clear();
  absl::InlinedVector<dnnl_exec_arg_t, 8> c_args;
  for (const auto& [id, value] : args)
    c_args.push_back({id, Bind(p, id, value.desc, value.data)});
  const size_t bytes = p.scratchpad.get_size();
  if (bytes > 0) {
    if (scratch_.num_bytes() < bytes) {
      scratch_ = Tensor::Empty(DType::kFloat64,
                               {static_cast<int64_t>((bytes + 7) / 8)});
    }
    c_args.push_back(
        {DNNL_ARG_SCRATCHPAD,
         Bind(p, DNNL_ARG_SCRATCHPAD, p.scratchpad, scratch_.raw_data())});
  }
  dnnl::error::wrap_c_api(
      dnnl_primitive_execute(p.primitive.get(), stream_.get(),
                             static_cast<int>(c_args.size()), c_args.data()),
      "could not execute a primitive");
  stream_.wait();
}

namespace {

// Whether `desc` is dense row-major for its own dims: the bytes of a plain
// tensor, whatever dims it views them with (grouped weights add one).
bool IsPlainLayout(const dnnl::memory::desc& desc) {
  const dnnl_memory_desc_t& d = desc.data;
  if (d.ndims <= 0 || d.ndims > DNNL_MAX_NDIMS) return false;
  // Tensors oneDNN runs are float32; others are plain with no type.
  const dnnl_memory_desc_t plain =
      RowMajor(d.ndims, d.dims,
               d.data_type == dnnl_f32 ? dnnl_f32 : dnnl_data_type_undef);
  return dnnl_memory_desc_equal(&d, &plain) != 0;
}

std::shared_ptr<const Layout> LayoutOf(const dnnl::memory::desc& desc) {
  return IsPlainLayout(desc) ? nullptr : std::make_shared<Layout>(Layout{desc});
}

}  // namespace

dnnl::memory::desc DescOf(const Tensor& t) {
  return t.is_plain() ? PlainDesc(t.shape(), t.dtype()) : t.layout()->desc;
}

Tensor EmptyIn(const TensorMeta& meta, const dnnl::memory::desc& desc) {
  std::shared_ptr<const Layout> layout = LayoutOf(desc);
  if (layout == nullptr) return Tensor::Empty(meta);
  return Tensor::EmptyWithLayout(meta, std::move(layout), desc.get_size());
}

Tensor Reordered(const Tensor& t, const dnnl::memory::desc& desc,
                 DnnlRunner& runner) {
  return Reordered(t, DescOf(t), desc, runner);
}

Tensor Reordered(const Tensor& t, const dnnl::memory::desc& from,
                 const dnnl::memory::desc& to, DnnlRunner& runner) {
  if (from == to || t.num_elements() == 0) {
    // The same bytes; only the description may change.
    return t.is_plain() == IsPlainLayout(to) ? t : t.WithLayout(LayoutOf(to));
  }
  Tensor out = EmptyIn(t.meta(), to);
  dnnl::reorder::primitive_desc pd(CpuEngine(), from, CpuEngine(), to,
                                   DefaultAttr());
  runner.Execute(MakePrimitive<dnnl::reorder>(pd),
                 {{DNNL_ARG_FROM, WrapTensor(from, t)},
                  {DNNL_ARG_TO, WrapTensor(to, out)}});
  return out;
}

Tensor Plain(const Tensor& t, DnnlRunner& runner) {
  if (t.is_plain()) return t;
  return Reordered(t, PlainDesc(t.shape(), t.dtype()), runner);
}

absl::Status DnnlErrorToStatus(const dnnl::error& e, absl::string_view node) {
  std::string message = absl::StrCat("node '", node, "': oneDNN: ", e.what());
  if (e.status == dnnl_unimplemented) {
    return absl::UnimplementedError(message);
  }
  return absl::InternalError(message);
}

}  // namespace gradserve
