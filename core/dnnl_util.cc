#include "core/dnnl_util.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace gradserve {

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
  dnnl::memory::dims dims = DnnlDims(shape);
  dnnl::memory::dims strides(dims.size());
  dnnl::memory::dim stride = 1;
  for (int i = static_cast<int>(dims.size()) - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= std::max<dnnl::memory::dim>(dims[i], 1);
  }
  return dnnl::memory::desc(dims, DnnlType(dtype), strides);
}

dnnl::memory WrapTensor(const dnnl::memory::desc& desc, const Tensor& t) {
  return dnnl::memory(desc, CpuEngine(), const_cast<void*>(t.raw_data()));
}

dnnl::primitive_attr DefaultAttr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

DnnlRunner::DnnlRunner() : stream_(CpuEngine()) {}

void DnnlRunner::Execute(const DnnlPrimitive& p,
                         std::unordered_map<int, dnnl::memory> args) {
  size_t bytes = p.scratchpad.get_size();
  if (bytes > 0) {
    if (scratch_.num_bytes() < bytes) {
      scratch_ = Tensor::Empty(DType::kFloat64,
                               {static_cast<int64_t>((bytes + 7) / 8)});
    }
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 dnnl::memory(p.scratchpad, CpuEngine(), scratch_.raw_data()));
  }
  p.primitive.execute(stream_, args);
  stream_.wait();
}

absl::Status DnnlErrorToStatus(const dnnl::error& e, absl::string_view node) {
  std::string message = absl::StrCat("node '", node, "': oneDNN: ", e.what());
  if (e.status == dnnl_unimplemented) {
    return absl::UnimplementedError(message);
  }
  return absl::InternalError(message);
}

}  // namespace gradserve
