#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "tests/fuzz/mutations.h"

namespace gradserve::fuzz {
namespace {

// Values are only resized for tensors this small (twice the fuzzer's
// element limit, so that the limit check is reached too).
constexpr int64_t kMaxResized = 8192;

// Elements the shape claims; -1 when a dim is negative or the product is
// beyond kMaxResized.
int64_t ClaimedElements(const google::protobuf::RepeatedField<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return -1;
    if (d == 0) return 0;
    if (d > kMaxResized || n > kMaxResized / d) return -1;
    n *= d;
  }
  return n;
}

bool IsInt(const pb::Tensor& t) { return t.dtype() == pb::DATA_TYPE_INT64; }

float Bfloat16ToFloat(const std::string& data, size_t i) {
  const uint32_t bits =
      (static_cast<uint32_t>(static_cast<uint8_t>(data[2 * i + 1])) << 24) |
      (static_cast<uint32_t>(static_cast<uint8_t>(data[2 * i])) << 16);
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// A tensor's values, as doubles (int64 values beyond 2^53 round; the
// extreme ones are written by SetInts, not through here).
std::vector<double> ReadValues(const pb::Tensor& t) {
  std::vector<double> v;
  if (t.float_values_size() > 0) {
    v.assign(t.float_values().begin(), t.float_values().end());
  } else if (t.int64_values_size() > 0) {
    v.assign(t.int64_values().begin(), t.int64_values().end());
  } else if (IsInt(t)) {
    for (size_t i = 0; i + 8 <= t.data().size(); i += 8) {
      int64_t x;
      std::memcpy(&x, t.data().data() + i, 8);
      v.push_back(static_cast<double>(x));
    }
  } else if (t.dtype() == pb::DATA_TYPE_BFLOAT16) {
    for (size_t i = 0; 2 * i + 2 <= t.data().size(); ++i) {
      v.push_back(Bfloat16ToFloat(t.data(), i));
    }
  } else {
    for (size_t i = 0; i + 4 <= t.data().size(); i += 4) {
      float x;
      std::memcpy(&x, t.data().data() + i, 4);
      v.push_back(x);
    }
  }
  return v;
}

int64_t ToInt(double v) {
  if (std::isnan(v)) return 0;
  if (v >= 9.2e18) return std::numeric_limits<int64_t>::max();
  if (v <= -9.2e18) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(v);
}

// The carrier a tensor uses: true for the repeated value fields.
bool UsesList(const pb::Tensor& t) {
  return t.float_values_size() > 0 || t.int64_values_size() > 0;
}

void WriteInts(pb::Tensor* t, const std::vector<int64_t>& v, bool list) {
  t->clear_data();
  t->clear_float_values();
  t->clear_int64_values();
  if (list) {
    t->mutable_int64_values()->Assign(v.begin(), v.end());
    return;
  }
  t->mutable_data()->assign(reinterpret_cast<const char*>(v.data()),
                            v.size() * sizeof(int64_t));
}

void WriteValues(pb::Tensor* t, const std::vector<double>& v, bool list) {
  if (IsInt(*t)) {
    std::vector<int64_t> ints(v.size());
    std::transform(v.begin(), v.end(), ints.begin(), ToInt);
    return WriteInts(t, ints, list);
  }
  std::vector<float> f(v.begin(), v.end());
  t->clear_data();
  t->clear_float_values();
  t->clear_int64_values();
  if (list) {
    t->mutable_float_values()->Assign(f.begin(), f.end());
  } else if (t->dtype() == pb::DATA_TYPE_BFLOAT16) {
    std::string* data = t->mutable_data();
    for (float x : f) {
      uint32_t bits;
      std::memcpy(&bits, &x, sizeof(bits));
      data->push_back(static_cast<char>((bits >> 16) & 0xff));
      data->push_back(static_cast<char>(bits >> 24));
    }
  } else {
    t->mutable_data()->assign(reinterpret_cast<const char*>(f.data()),
                              f.size() * sizeof(float));
  }
}

double NewValue(const pb::Tensor& t, Random& r) {
  return IsInt(t) ? static_cast<double>(r.Between(0, 4)) : r.Uniform();
}

void MutateDims(google::protobuf::RepeatedField<int64_t>* dims, const Sites& s,
                Random& r) {
  const int rank = dims->size();
  switch (r.Below(6)) {
    case 0:
      if (rank > 0) dims->Set(r.Below(rank), r.Dim());
      return;
    case 1:
      if (rank < 6) {
        dims->Add(r.Dim());
        std::rotate(dims->begin() + r.Below(rank + 1), dims->end() - 1,
                    dims->end());
      }
      return;
    case 2:
      if (rank > 0) dims->erase(dims->begin() + r.Below(rank));
      return;
    case 3:
      if (rank > 1) dims->SwapElements(r.Below(rank), r.Below(rank));
      return;
    case 4:
      if (!s.tensors.empty()) *dims = r.Pick(s.tensors)->shape();
      return;
    default:
      dims->Clear();
      for (int i = r.Below(5); i > 0; --i) dims->Add(r.Between(1, 5));
  }
}

void SetSomeValues(pb::Tensor* t, Random& r) {
  std::vector<double> v = ReadValues(*t);
  if (v.empty()) return;
  if (IsInt(*t)) {
    std::vector<int64_t> ints(v.size());
    std::transform(v.begin(), v.end(), ints.begin(), ToInt);
    for (int k = r.Between(1, 4); k > 0; --k) {
      ints[r.Below(static_cast<int>(ints.size()))] = r.Label();
    }
    return WriteInts(t, ints, UsesList(*t));
  }
  switch (r.Below(4)) {
    case 0:
      std::fill(v.begin(), v.end(), r.Float());
      break;
    case 1: {
      const double scale = r.Pick(std::vector<double>{1e-30, 1e10, 1e30, -1});
      for (double& x : v) x *= scale;
      break;
    }
    default:
      for (int k = r.Between(1, 4); k > 0; --k) {
        v[r.Below(static_cast<int>(v.size()))] = r.Float();
      }
  }
  WriteValues(t, v, UsesList(*t));
}

void MutateDtype(pb::Tensor* t, Random& r) {
  const std::vector<double> v = ReadValues(*t);
  const bool list = UsesList(*t);
  static const std::vector<int> dtypes = {1, 1, 2, 2, 3, 0, 7, -1};
  t->set_dtype(static_cast<pb::DataType>(r.Pick(dtypes)));
  if (r.Chance(0.8)) WriteValues(t, v, list && t->dtype() != 3);
}

void MutateCarrier(pb::Tensor* t, Random& r) {
  const std::vector<double> v = ReadValues(*t);
  if (r.Chance(0.8)) return WriteValues(t, v, !UsesList(*t));
  // Two carriers at once, or the list of the other dtype.
  if (IsInt(*t)) {
    t->add_float_values(1.0f);
  } else {
    t->add_int64_values(1);
  }
}

}  // namespace

void ResizeValues(pb::Tensor* t, Random& r) {
  const int64_t n = ClaimedElements(t->shape());
  if (n < 0) return;
  std::vector<double> v = ReadValues(*t);
  const size_t old = v.size();
  v.resize(n);
  for (size_t i = old; i < v.size(); ++i) {
    v[i] = old > 0 && r.Chance(0.5) ? v[i % old] : NewValue(*t, r);
  }
  WriteValues(t, v, UsesList(*t));
}

void MutateTensor(pb::Tensor* t, const Sites& s, Random& r) {
  switch (r.Below(10)) {
    case 0:
    case 1:
    case 2:
      MutateDims(t->mutable_shape(), s, r);
      if (r.Chance(0.85)) ResizeValues(t, r);
      return;
    case 3:
    case 4:
    case 5:
      return SetSomeValues(t, r);
    case 6:
      return MutateDtype(t, r);
    case 7:
      return MutateCarrier(t, r);
    case 8:
      if (!s.tensors.empty()) {
        const pb::Tensor copy = *r.Pick(s.tensors);
        *t = copy;
      }
      return;
    default:
      t->clear_shape();
      if (r.Chance(0.5)) t->add_shape(0);
      ResizeValues(t, r);
  }
}

void MutateTensorShape(pb::TensorShape* shape, Random& r) {
  if (r.Chance(0.2)) {
    shape->set_dtype(static_cast<pb::DataType>(r.Between(-1, 4)));
    return;
  }
  MutateDims(shape->mutable_dims(), Sites{}, r);
}

pb::Tensor RandomTensor(Random& r) {
  pb::Tensor t;
  t.set_dtype(r.Chance(0.8) ? pb::DATA_TYPE_FLOAT32 : pb::DATA_TYPE_INT64);
  for (int i = r.Below(5); i > 0; --i) t.add_shape(r.Between(1, 5));
  ResizeValues(&t, r);
  return t;
}

void MutateTensorMap(TensorMap* map, const Sites& s, Random& r) {
  const int kind = map->empty() ? 0 : r.Below(4);
  if (kind == 0) {
    const pb::Tensor value = !s.tensors.empty() && r.Chance(0.7)
                                 ? *r.Pick(s.tensors)
                                 : RandomTensor(r);
    (*map)[ValueName(s, r)] = value;
    return;
  }
  auto it = map->begin();
  std::advance(it, r.Below(static_cast<int>(map->size())));
  const std::string key = it->first;
  const pb::Tensor value = it->second;
  if (kind == 1) {
    map->erase(key);
  } else if (kind == 2) {
    map->erase(key);
    (*map)[ValueName(s, r)] = value;
  } else {
    TensorMap* other = r.Pick(s.tensor_maps);
    (*other)[key] = value;
  }
}

void MutateShapeMap(ShapeMap* map, const Sites& s, Random& r) {
  if (map->empty() || r.Chance(0.5)) {
    pb::TensorShape shape;
    if (!s.tensors.empty()) {
      const pb::Tensor& t = *r.Pick(s.tensors);
      *shape.mutable_dims() = t.shape();
      shape.set_dtype(t.dtype());
    }
    (*map)[ValueName(s, r)] = shape;
    return;
  }
  auto it = map->begin();
  std::advance(it, r.Below(static_cast<int>(map->size())));
  map->erase(it->first);
}

}  // namespace gradserve::fuzz
