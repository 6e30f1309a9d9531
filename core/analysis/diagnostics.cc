#include "core/analysis/diagnostics.h"

#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gradserve {
namespace {

constexpr double kSaturation = 1e-3;

bool ReluLike(absl::string_view op) {
  return op == "ReLU" || op == "LeakyReLU";
}
bool Squashing(absl::string_view op) { return op == "Sigmoid" || op == "Tanh"; }

template <typename T>
void Moments(const T* x, int64_t n, ValueDiagnostics& d) {
  double sum = 0;
  int64_t finite = 0, zeros = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    if (!std::isfinite(v)) {
      ++d.non_finite;
      continue;
    }
    sum += v;
    ++finite;
    zeros += v == 0;
  }
  d.mean = finite > 0 ? sum / static_cast<double>(finite) : 0;
  double squares = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    if (std::isfinite(v)) squares += (v - d.mean) * (v - d.mean);
  }
  d.std = finite > 0 ? std::sqrt(squares / static_cast<double>(finite)) : 0;
  d.zero_fraction = n > 0 ? static_cast<double>(zeros) / n : 0;
}

// Units along dim 1 that are <= 0 for every sample and position.
template <typename T>
double DeadFraction(const T* x, const Shape& shape) {
  if (shape.size() < 2 || ElementCount(shape) == 0) return 0;
  const int64_t units = shape[1];
  const int64_t inner = ElementCount(absl::MakeConstSpan(shape).subspan(2));
  std::vector<bool> alive(units, false);
  for (int64_t b = 0; b < shape[0]; ++b) {
    for (int64_t u = 0; u < units; ++u) {
      const T* row = x + (b * units + u) * inner;
      for (int64_t i = 0; i < inner && !alive[u]; ++i) alive[u] = row[i] > 0;
    }
  }
  int64_t dead = 0;
  for (bool a : alive) dead += !a;
  return static_cast<double>(dead) / static_cast<double>(units);
}

template <typename T>
double SaturatedFraction(const T* x, int64_t n, double lower) {
  int64_t saturated = 0;
  for (int64_t i = 0; i < n; ++i) {
    saturated += x[i] <= lower + kSaturation || x[i] >= 1 - kSaturation;
  }
  return n > 0 ? static_cast<double>(saturated) / n : 0;
}

template <typename T>
void Measure(const Tensor& t, ValueDiagnostics& d) {
  const T* x = t.data<T>();
  Moments(x, t.num_elements(), d);
  if (ReluLike(d.op)) d.dead_fraction = DeadFraction(x, t.shape());
  if (Squashing(d.op)) {
    d.saturated_fraction =
        SaturatedFraction(x, t.num_elements(), d.op == "Sigmoid" ? 0.0 : -1.0);
  }
}

template <typename T>
double Norm(const T* g, int64_t n) {
  double squares = 0;
  for (int64_t i = 0; i < n; ++i) {
    squares += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  }
  return std::sqrt(squares);
}

double NormOf(const Tensor& t) {
  switch (t.dtype()) {
    case DType::kFloat32:
      return Norm(t.data<float>(), t.num_elements());
    case DType::kFloat64:
      return Norm(t.data<double>(), t.num_elements());
    case DType::kInt64:
      break;
  }
  return 0;
}

std::string Percent(double fraction) {
  return absl::StrFormat("%.0f%%", 100 * fraction);
}

void ValueWarnings(Diagnostics& out) {
  for (const ValueDiagnostics& d : out.values) {
    if (d.non_finite > 0 && out.first_non_finite_node.empty()) {
      out.first_non_finite_node = d.node;
      out.warnings.push_back(absl::StrCat("node '", d.node, "' (", d.op,
                                          ") produced the first non-finite "
                                          "values: ",
                                          d.non_finite, " NaN or inf in '",
                                          d.value, "'"));
    }
    if (ReluLike(d.op) && d.batch >= 2 && d.dead_fraction >= 0.5) {
      out.warnings.push_back(absl::StrCat(
          "node '", d.node, "': ", Percent(d.dead_fraction), " of ", d.op,
          " units are dead (never positive in this batch of ", d.batch, ")"));
    }
    if (Squashing(d.op) && d.saturated_fraction >= 0.5) {
      out.warnings.push_back(absl::StrCat(
          "node '", d.node, "': ", Percent(d.saturated_fraction), " of ", d.op,
          " outputs are saturated (within 1e-3 of their bounds)"));
    }
  }
}

// The first and the last node with parameter gradients: each one's norm
// over its parameters.
void VanishingWarning(const Program& program, Diagnostics& out) {
  std::vector<std::pair<std::string, double>> layers;
  for (const ProgramNode& pn : program.nodes()) {
    double squares = 0;
    bool any = false;
    std::set<int> seen;
    for (int in : pn.node->inputs) {
      if (in < 0 || !seen.insert(in).second) continue;
      auto it = out.parameter_grad_norms.find(program.name(in));
      if (it == out.parameter_grad_norms.end()) continue;
      squares += it->second * it->second;
      any = true;
    }
    if (any) layers.emplace_back(pn.node->def.name, std::sqrt(squares));
  }
  if (layers.size() < 2) return;
  const auto& [first, first_norm] = layers.front();
  const auto& [last, last_norm] = layers.back();
  if (last_norm > 0 && first_norm < 1e-3 * last_norm) {
    out.warnings.push_back(absl::StrFormat(
        "gradient norm at '%s' is %.2g of that at '%s': vanishing gradients",
        first, first_norm / last_norm, last));
  }
}

}  // namespace

void DiagnosticsRecorder::OnOutput(const Program& program, int node, int value,
                                   const Tensor& plain) {
  program_ = &program;
  const NodeDef& def = program.nodes()[node].node->def;
  ValueDiagnostics d;
  d.value = program.name(value);
  d.node = def.name;
  d.op = def.op;
  d.batch = plain.rank() >= 1 ? plain.dim(0) : 0;
  switch (plain.dtype()) {
    case DType::kFloat32:
      Measure<float>(plain, d);
      break;
    case DType::kFloat64:
      Measure<double>(plain, d);
      break;
    case DType::kInt64:
      Measure<int64_t>(plain, d);
      break;
  }
  slots_[value] = values_.size();
  values_.push_back(std::move(d));
}

void DiagnosticsRecorder::OnGradient(const Program& program, int value,
                                     const Tensor& plain) {
  auto it = slots_.find(value);
  if (it != slots_.end()) values_[it->second].grad_norm = NormOf(plain);
}

Diagnostics DiagnosticsRecorder::Finish(
    const std::map<std::string, Tensor>& gradients) const {
  Diagnostics out;
  out.values = values_;
  if (program_ == nullptr) return out;
  for (const auto& [name, g] : gradients) {
    const int id = program_->ValueId(name);
    if (id >= 0 && program_->kind(id) == ValueKind::kParameter) {
      out.parameter_grad_norms[name] = NormOf(g);
    }
  }
  ValueWarnings(out);
  VanishingWarning(*program_, out);
  return out;
}

}  // namespace gradserve
